//! A fake GitHub on 127.0.0.1:0: `/login/oauth/authorize` sends the
//! browser straight back with a code (no UI), `/login/oauth/access_token`
//! checks the client, the redirect URI and PKCE (S256), and the REST API
//! answers `/user` and `/user/emails` for the token it issued.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use super::oauth_common::{pkce_matches, random_token};

/// The client id test apps are configured with.
pub const CLIENT_ID: &str = "Iv1.tollgatetest";
/// Its secret.
pub const CLIENT_SECRET: &str = "github-test-secret";

/// A GitHub user as the fake answers for them.
#[derive(Debug, Clone)]
pub struct GithubUser {
    /// The numeric user id.
    pub id: u64,
    /// The login.
    pub login: String,
    /// `(email, primary, verified)` as `/user/emails` lists them.
    pub emails: Vec<(String, bool, bool)>,
}

impl GithubUser {
    /// A user whose one address is primary and verified.
    pub fn verified(id: u64, email: &str) -> Self {
        Self {
            id,
            login: format!("user{id}"),
            emails: vec![(email.to_owned(), true, true)],
        }
    }
}

struct Grant {
    redirect_uri: String,
    challenge: Option<String>,
    method: Option<String>,
    user: GithubUser,
}

struct Inner {
    user: GithubUser,
    deny: bool,
    grants: HashMap<String, Grant>,
    tokens: HashMap<String, GithubUser>,
    scopes_seen: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake GitHub.
pub struct GithubFake {
    /// Its base URL, for both OAUTH_GITHUB_AUTH_BASE and _API_BASE.
    pub url: String,
    inner: Shared,
    server: JoinHandle<()>,
}

impl GithubFake {
    /// Starts a fake where `user` signs in.
    pub async fn start(user: GithubUser) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding port 0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let inner = Arc::new(Mutex::new(Inner {
            user,
            deny: false,
            grants: HashMap::new(),
            tokens: HashMap::new(),
            scopes_seen: Vec::new(),
        }));
        let router = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user_profile))
            .route("/user/emails", get(emails))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, inner, server }
    }

    /// The variables that configure it as GitHub.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("OAUTH_GITHUB_CLIENT_ID".to_owned(), CLIENT_ID.to_owned()),
            ("OAUTH_GITHUB_CLIENT_SECRET".to_owned(), CLIENT_SECRET.to_owned()),
            ("OAUTH_GITHUB_AUTH_BASE".to_owned(), self.url.clone()),
            ("OAUTH_GITHUB_API_BASE".to_owned(), self.url.clone()),
        ]
    }

    /// Who signs in from now on.
    pub fn sign_in_as(&self, user: GithubUser) {
        self.inner.lock().expect("fake state").user = user;
    }

    /// Denies at the authorize step from now on.
    pub fn deny(&self) {
        self.inner.lock().expect("fake state").deny = true;
    }

    /// The `scope` of every authorize request so far.
    pub fn scopes_seen(&self) -> Vec<String> {
        self.inner.lock().expect("fake state").scopes_seen.clone()
    }
}

impl Drop for GithubFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn authorize(State(inner): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let mut inner = inner.lock().expect("fake state");
    let (Some(redirect_uri), Some(state)) = (query.get("redirect_uri"), query.get("state")) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and state are required").into_response();
    };
    inner.scopes_seen.push(query.get("scope").cloned().unwrap_or_default());
    let mut back = url::Url::parse(redirect_uri).expect("a redirect URI");
    if inner.deny || query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", state);
        return Redirect::to(back.as_str()).into_response();
    }
    let code = random_token();
    let user = inner.user.clone();
    inner.grants.insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            challenge: query.get("code_challenge").cloned(),
            method: query.get("code_challenge_method").cloned(),
            user,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    Redirect::to(back.as_str()).into_response()
}

async fn access_token(State(inner): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut inner = inner.lock().expect("fake state");
    // GitHub answers errors with 200 and an `error` field.
    let refuse = |error: &str| Json(json!({ "error": error })).into_response();
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return refuse("incorrect_client_credentials");
    }
    let Some(grant) = form.get("code").and_then(|code| inner.grants.remove(code)) else {
        return refuse("bad_verification_code");
    };
    let verifier = form.get("code_verifier").map(String::as_str);
    let pkce_ok = grant.method.as_deref() == Some("S256")
        && matches!((grant.challenge.as_deref(), verifier), (Some(c), Some(v)) if pkce_matches(v, c));
    if !pkce_ok || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return refuse("bad_verification_code");
    }
    let token = format!("gho_{}", random_token());
    inner.tokens.insert(token.clone(), grant.user);
    Json(json!({ "access_token": token, "token_type": "bearer", "scope": "user:email" })).into_response()
}

fn caller(inner: &Shared, headers: &HeaderMap) -> Option<GithubUser> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    inner.lock().expect("fake state").tokens.get(token).cloned()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({ "message": "Bad credentials" }))).into_response()
}

async fn user_profile(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = caller(&inner, &headers) else {
        return unauthorized();
    };
    // The public profile email may be empty or any address: not used.
    Json(json!({ "id": user.id, "login": user.login, "name": null, "email": null })).into_response()
}

async fn emails(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = caller(&inner, &headers) else {
        return unauthorized();
    };
    let list: Vec<Value> = user
        .emails
        .iter()
        .map(|(email, primary, verified)| {
            json!({ "email": email, "primary": primary, "verified": verified, "visibility": null })
        })
        .collect();
    Json(Value::Array(list)).into_response()
}
