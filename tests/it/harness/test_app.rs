//! A real server on 127.0.0.1:0 with its own database, and one-line helpers
//! to talk to it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tollgate::{
    AppState, Config,
    db::DbConn,
    platform::clock::{AdjustableClock, SharedClock},
};
use uuid::Uuid;

use super::services::services;

/// JWT secret of every test app.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A running application instance.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (database pool, token minting, counters).
    pub state: AppState,
    /// Its clock; tests move it.
    pub clock: Arc<AdjustableClock>,
    /// Name of its database.
    pub database: String,
    /// The variables it was configured with, for siblings.
    vars: HashMap<String, String>,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<anyhow::Result<()>>>,
    _data_dir: Arc<tempfile::TempDir>,
}

/// How to build a test app.
#[derive(Default)]
pub struct TestAppOptions {
    /// Leave REDIS_URL unset: the PostgreSQL fallback paths.
    pub without_redis: bool,
    /// Extra or overriding environment variables.
    pub vars: Vec<(String, String)>,
}

impl TestApp {
    /// An app with Redis, on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(TestAppOptions::default()).await
    }

    /// An app configured by `options`, on a fresh database.
    pub async fn spawn_with(options: TestAppOptions) -> Self {
        let services = services();
        let (database, database_url) = services.create_database().await;
        let mut vars = HashMap::from([
            ("DATABASE_URL".to_owned(), database_url),
            ("JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
            ("REDIS_KEY_PREFIX".to_owned(), format!("{database}:")),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
        ]);
        if !options.without_redis {
            vars.insert("REDIS_URL".to_owned(), services.redis_url.clone());
        }
        vars.extend(options.vars);
        Self::start(database, vars, Arc::new(AdjustableClock::new()), None).await
    }

    /// An app with Redis, or without it (the PostgreSQL fallbacks).
    pub async fn spawn_with_redis(use_redis: bool) -> Self {
        Self::spawn_with(TestAppOptions {
            without_redis: !use_redis,
            ..Default::default()
        })
        .await
    }

    /// A second instance on the same database and Redis prefix, as a load
    /// balancer would see it.
    pub async fn spawn_sibling(&self) -> Self {
        Self::start(
            self.database.clone(),
            self.vars.clone(),
            Arc::new(AdjustableClock::new()),
            Some(self._data_dir.clone()),
        )
        .await
    }

    /// A sibling configured differently: each `(variable, value)` sets a
    /// variable, or unsets it for `None` (another Redis prefix, no Redis).
    pub async fn spawn_sibling_with(&self, changes: &[(&str, Option<&str>)]) -> Self {
        self.try_spawn_sibling_with(changes).await.expect("building the app")
    }

    /// [`Self::spawn_sibling_with`], answering the start-up error of a
    /// configuration the server refuses instead of panicking.
    pub async fn try_spawn_sibling_with(&self, changes: &[(&str, Option<&str>)]) -> anyhow::Result<Self> {
        let mut vars = self.vars.clone();
        for (variable, value) in changes {
            match value {
                Some(value) => vars.insert((*variable).to_owned(), (*value).to_owned()),
                None => vars.remove(*variable),
            };
        }
        Self::try_start(
            self.database.clone(),
            vars,
            Arc::new(AdjustableClock::new()),
            Some(self._data_dir.clone()),
        )
        .await
    }

    async fn start(
        database: String,
        vars: HashMap<String, String>,
        clock: Arc<AdjustableClock>,
        data_dir: Option<Arc<tempfile::TempDir>>,
    ) -> Self {
        Self::try_start(database, vars, clock, data_dir)
            .await
            .expect("building the app")
    }

    async fn try_start(
        database: String,
        mut vars: HashMap<String, String>,
        clock: Arc<AdjustableClock>,
        data_dir: Option<Arc<tempfile::TempDir>>,
    ) -> anyhow::Result<Self> {
        let data_dir = data_dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding port 0");
        let addr = listener.local_addr().expect("local address");
        vars.insert("DATA_DIR".to_owned(), data_dir.path().display().to_string());
        vars.insert("PORT".to_owned(), addr.port().to_string());
        vars.entry("PUBLIC_URL".to_owned())
            .or_insert_with(|| format!("http://{addr}"));
        let config = Config::from_vars(&vars).expect("test configuration");
        let shared: SharedClock = clock.clone();
        let app = tollgate::build_app_with_clock(config, shared).await?;
        let state = app.state.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(app.serve_until(listener, async move {
            let _ = stopped.await;
        }));
        // The PUBLIC_URL of a sibling is its own address.
        vars.remove("PUBLIC_URL");
        Ok(Self {
            addr,
            state,
            clock,
            database,
            vars,
            client: reqwest::Client::new(),
            stop: Some(stop),
            served: Some(served),
            _data_dir: data_dir,
        })
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The websocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// An HTTP client for requests the helpers do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Runs a GraphQL operation anonymously.
    pub async fn graphql(&self, query: &str, variables: Value) -> GqlResponse {
        self.post_graphql(None, query, variables).await
    }

    /// Runs a GraphQL operation with `Authorization: Bearer <token>`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> GqlResponse {
        self.post_graphql(Some(token), query, variables).await
    }

    async fn post_graphql(&self, token: Option<&str>, query: &str, variables: Value) -> GqlResponse {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        GqlResponse::from(request.send().await.expect("POST /graphql")).await
    }

    /// An access token for `user_id` in a new session.
    pub async fn token_for(&self, user_id: Uuid) -> String {
        let meta = tollgate_core::request::RequestMeta {
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: Some("tests".to_owned()),
        };
        let mut conn = self.db().await;
        let session = tollgate::auth::sessions::create(&mut conn, &self.state, user_id, &meta, None)
            .await
            .expect("creating a session");
        tollgate::auth::sessions::tokens_for(&self.state, session)
            .expect("issuing tokens")
            .access_token
    }

    /// Every announcement this instance applies from now on, as (topic,
    /// payload).
    pub fn announcements(&self) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.state.announcements().listen(move |heard| {
            if let tollgate::platform::announcements::Heard::Announced { topic, payload } = heard {
                let _ = sender.send(((*topic).to_owned(), (*payload).to_owned()));
            }
        });
        receiver
    }

    /// A pooled connection to the app's database.
    pub async fn db(&self) -> DbConn {
        self.state.pool().get().await.expect("database connection")
    }

    /// Returns once a statement of this app's database waits on a lock, or
    /// after 5 s when none did: for tests that hold a row to line up what
    /// then waits behind it.
    pub async fn wait_for_a_lock_waiter(&self) {
        use diesel_async::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut watcher = self.db().await;
        for _ in 0..250 {
            let waiting = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result::<Waiting>(&mut *watcher)
            .await
            .expect("pg_stat_activity");
            if waiting.n > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// SQL statements this instance has run.
    pub fn query_count(&self) -> u64 {
        self.state.query_count()
    }

    /// Shuts the server down as SIGTERM would, and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A GraphQL answer as a client sees it.
#[derive(Debug)]
pub struct GqlResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body (`Null` when the body is empty or not JSON).
    pub body: Value,
}

impl GqlResponse {
    /// Reads a reqwest response.
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let text = response.text().await.expect("response body");
        Self {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// `data`, asserting there were no errors.
    pub fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }

    /// `extensions.code` of the first error.
    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }
}
