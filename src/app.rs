//! The application: its shared state, how it is assembled from a
//! [`Config`], and how it serves and shuts down.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, Request, header},
    routing::get,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use tollgate_auth::AppState;
use tollgate_auth::AuthParts;
use tollgate_platform::{Platform, PlatformParts};

use crate::{
    auth::keys::cache::KeyCache,
    auth::{
        AccessTokens, PasswordHasher, RefreshTokens, access_token::load_or_create_dev_secret,
        session_cache::SessionCache,
    },
    config::{Config, CorsOrigins, redact_url},
    db::{
        QueryCounter,
        local_postgres::{LocalPostgres, LocalPostgresOptions},
        migrations, pool,
    },
    graphql::{self, HttpState, QueryLimits, persisted::PersistedQueries},
    platform::{
        announcements::Announcements,
        clock::{SharedClock, SystemClock},
        events::{BusConfig, EventBus},
        metrics,
        rate_limit::RateLimiter,
        secrets::Secrets,
    },
    usage::live::UsageHub,
};

/// Name of the database the embedded PostgreSQL serves.
const LOCAL_DATABASE: &str = "tollgate";
/// Connections per instance for background jobs.
const JOBS_POOL_SIZE: usize = 4;
/// How long shutdown waits for websockets and jobs to finish.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A built application, ready to serve.
pub struct App {
    /// Shared state (also reachable from tests).
    pub state: AppState,
    /// The router with every endpoint.
    pub router: Router,
    database: Database,
}

/// Where the database is, and the embedded server when we run one.
pub struct Database {
    /// Connection URL (may hold a password).
    pub url: SecretString,
    /// The embedded server, when no DATABASE_URL was given.
    pub local: Option<LocalPostgres>,
}

impl Database {
    /// Stops the embedded server if this process started it.
    pub async fn stop(&self) {
        if let Some(local) = &self.local
            && let Err(e) = local.stop_if_started_here().await
        {
            tracing::warn!(error = %e, "could not stop the embedded PostgreSQL");
        }
    }
}

/// Finds the database: DATABASE_URL, or the embedded PostgreSQL in
/// `$DATA_DIR/postgres` (started when needed).
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    if let Some(url) = &config.database_url {
        tracing::info!(database = %redact_url(url.expose_secret()), "using DATABASE_URL");
        return Ok(Database {
            url: url.clone(),
            local: None,
        });
    }
    let dir = config.absolute_data_dir()?.join("postgres");
    let local = LocalPostgres::ensure_running(&dir, LocalPostgresOptions::default()).await?;
    local.ensure_database(LOCAL_DATABASE).await?;
    let url = local.url(LOCAL_DATABASE);
    tracing::info!(database = %redact_url(&url), socket_dir = %local.socket_dir().display(), "using the embedded PostgreSQL");
    Ok(Database {
        url: SecretString::from(url),
        local: Some(local),
    })
}

/// Builds the app with the system clock: database, migrations, pool,
/// Redis, schema and router.
pub async fn build_app(config: Config) -> anyhow::Result<App> {
    build_app_with_clock(config, Arc::new(SystemClock)).await
}

/// [`build_app`] with a clock of the caller's choosing (tests move time).
pub async fn build_app_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<App> {
    let database = open_database(&config).await?;
    let result = assemble(config, clock, &database.url).await;
    match result {
        Ok((state, router)) => Ok(App {
            state,
            router,
            database,
        }),
        Err(e) => {
            database.stop().await;
            Err(e)
        }
    }
}

async fn assemble(
    config: Config,
    clock: SharedClock,
    database_url: &SecretString,
) -> anyhow::Result<(AppState, Router)> {
    let applied = migrations::run_pending(database_url.expose_secret())
        .await
        .context("migrating the database")?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    let queries = QueryCounter::default();
    let pool = pool::build_pool(database_url.expose_secret(), config.database_pool_size, queries.clone())?;
    let jobs_pool = pool::build_pool(database_url.expose_secret(), JOBS_POOL_SIZE, QueryCounter::default())?;

    let jwt_secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => load_or_create_dev_secret(&config.data_dir).context("creating the development JWT secret")?,
    };
    let access_tokens = AccessTokens::new(&jwt_secret, crate::auth::access_token::ISSUER, config.access_token_ttl);
    let refresh_tokens = RefreshTokens::new(&jwt_secret);

    let redis = match &config.redis_url {
        Some(url) => Some(connect_redis(url).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let bus_config = match &redis {
        Some((client, manager)) => BusConfig::Redis {
            client: client.clone(),
            publisher: manager.clone(),
            prefix: config.redis_key_prefix.clone(),
        },
        None => BusConfig::Postgres {
            url: database_url.clone(),
        },
    };
    let events = EventBus::start(bus_config, &tasks, shutdown.clone()).await?;
    let announcements = Announcements::default();
    let session_cache = SessionCache::default();
    session_cache.follow(&announcements);
    let key_cache = KeyCache::default();
    key_cache.follow(&announcements);
    let usage_hub = UsageHub::default();
    usage_hub.follow_announcements(&announcements);
    tasks.spawn(usage_hub.follow_usage(&events, shutdown.clone()));
    announcements
        .start(database_url.clone(), &tasks, shutdown.clone())
        .await;
    let redis = redis.map(|(_, manager)| manager);
    let rate_limiter = RateLimiter::new(redis.clone(), config.redis_key_prefix.clone());

    let schema = graphql::build_schema(QueryLimits {
        max_depth: config.graphql_max_depth,
        max_complexity: config.graphql_max_complexity,
        max_statements: config.graphql_max_statements,
        max_response_bytes: config.graphql_max_response_bytes,
        introspection: config.introspection,
        ..QueryLimits::default()
    });

    let secrets = Secrets::from_config(&config).context("setting up the secrets key")?;
    let platform = Platform::new(PlatformParts {
        config,
        pool,
        jobs_pool,
        clock,
        redis,
        events,
        announcements,
        rate_limiter,
        secrets,
        queries,
        shutdown,
        tasks,
    });
    let state = AppState::new(
        platform,
        AuthParts {
            access_tokens,
            refresh_tokens,
            passwords: PasswordHasher::default(),
            session_cache,
            key_cache,
        },
    );
    // Before anything serves or runs: a stored provider key this instance
    // cannot read stops it here, and the environment's providers exist
    // before the first call.
    if let Err(e) = crate::providers::seed::prepare(&state).await {
        state.shutdown_signal().cancel();
        return Err(e);
    }
    crate::platform::mail::spawn_worker(&state);
    crate::billing::jobs(&state);
    tollgate_gateway::jobs(&state);
    let passwords = state.passwords().clone();
    state.tasks().spawn(async move { passwords.prime().await });
    let persisted = PersistedQueries::new(state.redis().cloned(), state.config().redis_key_prefix.clone());
    let router = router(HttpState {
        app: state.clone(),
        schema,
        persisted,
        usage_hub,
    });
    Ok((state, router))
}

async fn connect_redis(url: &SecretString) -> anyhow::Result<(redis::Client, redis::aio::ConnectionManager)> {
    let shown = redact_url(url.expose_secret());
    let client = redis::Client::open(url.expose_secret()).with_context(|| format!("REDIS_URL {shown}"))?;
    let manager = redis::aio::ConnectionManager::new(client.clone())
        .await
        .with_context(|| format!("connecting to Redis at {shown}"))?;
    tracing::info!(redis = %shown, "using Redis");
    Ok((client, manager))
}

fn router(state: HttpState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let cors = cors_layer(&state.app.config().cors_origins);
    Router::new()
        .route(
            "/graphql",
            get(graphql::http::graphql_get).post(graphql::http::graphql_post),
        )
        .route("/health", get(crate::routes::health::health))
        .route("/ready", get(crate::routes::health::ready))
        .route("/metrics", get(crate::routes::health::metrics))
        .merge(crate::accounts::routes())
        .merge(crate::billing::routes())
        .merge(tollgate_gateway::routes())
        .merge(if state.app.config().playground {
            crate::routes::playground::routes()
        } else {
            Router::new()
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.app.metrics().clone(),
            metrics::track_http,
        ))
        .with_state(state)
        // Every request takes its connections in a scope of its own, so
        // asking for a second one while holding one is refused, not a stall.
        .layer(axum::middleware::from_fn(in_connection_scope))
        // A panic anywhere below answers 500 with a contract-shaped error
        // instead of dropping the connection.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn in_connection_scope(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    crate::db::hold::scoped(next.run(request)).await
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("a request handler panicked");
    crate::graphql::http::error_response(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        crate::error::AppError::internal(anyhow::anyhow!("handler panicked")),
    )
}

fn cors_layer(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        // The preflight-forcing headers a multipart request must carry
        // (graphql::media::PREFLIGHT_HEADERS) among them.
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("apollo-require-preflight"),
            HeaderName::from_static("x-tollgate-csrf"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}

impl App {
    /// Serves until SIGINT or SIGTERM, then drains and stops the embedded
    /// PostgreSQL if this process started it.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        self.serve_until(listener, shutdown_requested()).await
    }

    /// Serves until `signal` completes, then drains: in-flight requests
    /// finish, websockets are closed with 1001, tracked tasks get
    /// [`DRAIN_TIMEOUT`] to end.
    pub async fn serve_until(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let token = state.shutdown_signal().clone();
        let stop = token.clone();
        tokio::spawn(async move {
            signal.await;
            stop.cancel();
        });
        let draining = token.clone();
        let serving = axum::serve(
            listener,
            self.router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await });
        // A request stuck past the drain time must not hold the process.
        let served = tokio::select! {
            served = serving => served,
            () = async { draining.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
                tracing::warn!("requests still running after the drain time; stopping anyway");
                Ok(())
            }
        };
        state.tasks().close();
        if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks().wait()).await.is_err() {
            tracing::warn!("some connections did not close in time");
        }
        self.database.stop().await;
        served.context("serving HTTP")
    }

    /// Stops the embedded PostgreSQL (for one-shot commands that built an app).
    pub async fn close(self) {
        self.state.shutdown_signal().cancel();
        self.database.stop().await;
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_requested() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
