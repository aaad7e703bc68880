//! The LLM gateway: OpenAI- and Anthropic-compatible endpoints under `/v1`
//! that carry a caller's calls to the providers with the platform's own
//! credentials, holding each call's tokens against the budgets before it
//! starts and recording what it used when it ends.
//!
//! A call is reserved before it goes upstream (so that concurrent calls
//! cannot together pass a budget) and settled after, as one PROXY usage
//! event with the provider's counts, in one transaction with the
//! reservation's release. The pieces, in the order a call meets them:
//! [`caller`] (the key), [`wire`] (the body), [`target`] (the model and
//! its routes), [`proxy`] (the reservation and the pipeline), [`upstream`]
//! (the routes, with fallback and [`breaker`]s), [`relay`] (streams) and
//! [`hold`] (settling exactly once, even when the caller hangs up).

pub mod breaker;
pub mod caller;
pub mod error;
pub mod hold;
pub mod models;
pub mod proxy;
pub mod relay;
pub mod state;
pub mod target;
pub mod upstream;
pub mod wire;

use axum::{
    Extension, Router,
    extract::FromRef,
    routing::{get, post},
};
use tollgate_auth::AppState;

pub use proxy::{MAX_BODY_BYTES, REQUEST_ID_HEADER};
pub use state::Gateway;

/// The gateway's routes: POST /v1/chat/completions, /v1/embeddings and
/// /v1/messages, GET /v1/models. Bodies are read up to
/// [`MAX_BODY_BYTES`] by the handlers themselves, so a larger one is
/// refused in the API's own shape.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/messages", post(proxy::messages))
        .route("/v1/models", get(models::list))
        .layer(Extension(Gateway::default()))
}

/// Starts the gateway's jobs: settling reservations whose instance died.
pub fn jobs(app: &AppState) {
    tollgate_services::usage::reservations::spawn_expiry_job(app);
}
