//! A fake OpenID Connect provider on 127.0.0.1:0: discovery, a JWKS with
//! the key it signs with now (it rotates to a second one on request),
//! `/authorize` that sends the browser straight back with a code (or
//! `error=access_denied`) without a UI, and a token endpoint that checks
//! the client, the redirect URI and PKCE (S256) before it answers with an
//! RS256 ID token. The keys are fixtures (tests/fixtures/oidc): generating
//! RSA keys in a debug build is slow.

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
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

use super::oauth_common::{pkce_matches, random_token};

/// The client id test apps are configured with.
pub const CLIENT_ID: &str = "tollgate-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "tollgate-test-secret";

const KEYS: [(&str, &str); 2] = [
    ("key1", include_str!("../../fixtures/oidc/key1.pem")),
    ("key2", include_str!("../../fixtures/oidc/key2.pem")),
];
const JWKS: &str = include_str!("../../fixtures/oidc/jwks.json");

/// Who signs in next at the fake.
#[derive(Debug, Clone)]
pub struct Person {
    /// `sub`.
    pub subject: String,
    /// `email`, if any.
    pub email: Option<String>,
    /// `email_verified`; None leaves the claim out.
    pub email_verified: Option<bool>,
    /// `name`.
    pub name: String,
}

impl Person {
    /// A person whose address the provider verified.
    pub fn verified(subject: &str, email: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            email: Some(email.to_owned()),
            email_verified: Some(true),
            name: "Grace Hopper".to_owned(),
        }
    }
}

/// What the fake does wrong on purpose, for the next ID tokens.
#[derive(Debug, Clone, Default)]
pub struct Mischief {
    /// `aud` other than the client id.
    pub audience: Option<String>,
    /// `nonce` other than the one the client sent.
    pub nonce: Option<String>,
    /// Deny at `/authorize` (`error=access_denied`).
    pub deny: bool,
}

struct Grant {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    method: Option<String>,
    person: Person,
}

struct Inner {
    issuer: String,
    signing_key: usize,
    person: Person,
    mischief: Mischief,
    grants: HashMap<String, Grant>,
    token_calls: usize,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake provider.
pub struct OidcFake {
    /// Its issuer URL (`http://127.0.0.1:port`).
    pub issuer: String,
    inner: Shared,
    server: JoinHandle<()>,
}

impl OidcFake {
    /// Starts a provider that signs `person` in.
    pub async fn start(person: Person) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding port 0");
        let issuer = format!("http://{}", listener.local_addr().expect("local address"));
        let inner = Arc::new(Mutex::new(Inner {
            issuer: issuer.clone(),
            signing_key: 0,
            person,
            mischief: Mischief::default(),
            grants: HashMap::new(),
            token_calls: 0,
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { issuer, inner, server }
    }

    /// The variables that configure it as the OIDC provider `name`.
    pub fn vars(&self, name: &str) -> Vec<(String, String)> {
        let upper = name.to_ascii_uppercase();
        vec![
            (format!("OIDC_{upper}_ISSUER"), self.issuer.clone()),
            (format!("OIDC_{upper}_CLIENT_ID"), CLIENT_ID.to_owned()),
            (format!("OIDC_{upper}_CLIENT_SECRET"), CLIENT_SECRET.to_owned()),
        ]
    }

    /// Who signs in from now on.
    pub fn sign_in_as(&self, person: Person) {
        self.inner.lock().expect("fake state").person = person;
    }

    /// Misbehaves from now on.
    pub fn misbehave(&self, mischief: Mischief) {
        self.inner.lock().expect("fake state").mischief = mischief;
    }

    /// Signs with the other key from now on and publishes only that one.
    pub fn rotate_key(&self) {
        let mut inner = self.inner.lock().expect("fake state");
        inner.signing_key = 1 - inner.signing_key;
    }

    /// How many token requests it answered.
    pub fn token_calls(&self) -> usize {
        self.inner.lock().expect("fake state").token_calls
    }
}

impl Drop for OidcFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn discovery(State(inner): State<Shared>) -> Json<Value> {
    let issuer = inner.lock().expect("fake state").issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "email", "email_verified", "name"],
    }))
}

async fn jwks(State(inner): State<Shared>) -> Json<Value> {
    let (kid, _) = KEYS[inner.lock().expect("fake state").signing_key];
    let all: Value = serde_json::from_str(JWKS).expect("fixture JWKS");
    let key = &all[kid];
    Json(json!({ "keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": key["n"], "e": key["e"],
    }] }))
}

async fn authorize(State(inner): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let mut inner = inner.lock().expect("fake state");
    let (Some(redirect_uri), Some(state)) = (query.get("redirect_uri"), query.get("state")) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and state are required").into_response();
    };
    let mut back = url::Url::parse(redirect_uri).expect("a redirect URI");
    let scopes: Vec<&str> = query.get("scope").map(|s| s.split(' ').collect()).unwrap_or_default();
    let wrong_client = query.get("client_id").map(String::as_str) != Some(CLIENT_ID);
    if inner.mischief.deny || wrong_client || !scopes.contains(&"openid") {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", state);
        return Redirect::to(back.as_str()).into_response();
    }
    let code = random_token();
    let person = inner.person.clone();
    inner.grants.insert(
        code.clone(),
        Grant {
            redirect_uri: redirect_uri.clone(),
            nonce: query.get("nonce").cloned(),
            challenge: query.get("code_challenge").cloned(),
            method: query.get("code_challenge_method").cloned(),
            person,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    Redirect::to(back.as_str()).into_response()
}

/// The DER inside a PKCS#1 PEM (jsonwebtoken reads PEM only with a
/// feature the server does not need).
fn pkcs1_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("a base64 PEM body")
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response()
}

/// The client credentials of a token request: HTTP Basic or form fields.
fn client_of(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .replace('+', " ")
        };
        return Some((unescape(id), unescape(secret)));
    }
    Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone()))
}

async fn token(State(inner): State<Shared>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut inner = inner.lock().expect("fake state");
    inner.token_calls += 1;
    if client_of(&headers, &form) != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())) {
        return token_error("invalid_client");
    }
    let Some(grant) = form.get("code").and_then(|code| inner.grants.remove(code)) else {
        return token_error("invalid_grant");
    };
    let verifier = form.get("code_verifier").map(String::as_str);
    let pkce_ok = grant.method.as_deref() == Some("S256")
        && matches!((grant.challenge.as_deref(), verifier), (Some(c), Some(v)) if pkce_matches(v, c));
    if !pkce_ok || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return token_error("invalid_grant");
    }
    let now = chrono::Utc::now().timestamp();
    let person = &grant.person;
    let mut claims = json!({
        "iss": inner.issuer,
        "sub": person.subject,
        "aud": inner.mischief.audience.clone().unwrap_or_else(|| CLIENT_ID.to_owned()),
        "iat": now,
        "exp": now + 300,
        "name": person.name,
    });
    if let Some(nonce) = inner.mischief.nonce.clone().or(grant.nonce) {
        claims["nonce"] = nonce.into();
    }
    if let Some(email) = &person.email {
        claims["email"] = email.clone().into();
    }
    if let Some(verified) = person.email_verified {
        claims["email_verified"] = verified.into();
    }
    let (kid, pem) = KEYS[inner.signing_key];
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_der(&pkcs1_der(pem));
    let id_token = jsonwebtoken::encode(&header, &claims, &key).expect("signing an ID token");
    Json(json!({
        "access_token": random_token(),
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token,
    }))
    .into_response()
}
