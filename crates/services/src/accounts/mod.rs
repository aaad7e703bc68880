//! People and their accounts: users, registration, sign-in, sessions,
//! email tokens, recovery, profiles, avatars, device login,
//! two-factor authentication and sign-in with identity providers.

pub mod avatars;
pub mod device;
pub mod lockout;
pub mod login;
pub mod mfa;
pub mod oauth;
pub mod pages;
pub mod password_policy;
pub mod profile;
pub mod recovery;
pub mod registration;
pub mod service;
pub mod throttle;

use axum::{Router, extract::FromRef, routing::get};

use tollgate_auth::AppState;

/// What accounts adds to the server besides GraphQL: the pages that email
/// links open, avatar images, and where identity providers return.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new()
        .route("/avatars/{id}", get(avatars::serve))
        .route("/device", get(pages::device_page))
        .route("/oauth/callback", get(oauth::callback::callback))
        .route("/verify-email", get(pages::verify_email_page))
        .route("/reset-password", get(pages::reset_password_page))
        .route("/accept-invitation", get(pages::accept_invitation_page))
}
