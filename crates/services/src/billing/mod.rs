//! Paying for plans through Stripe: checkout, the billing portal,
//! cancellation, webhooks, and the job that announces when a paid plan
//! stops counting. Plans and subscriptions themselves are in `plans`.
//!
//! Stripe is the source of truth for paid state: every change it makes is
//! fetched from it and applied through [`changes`].

pub mod admin;
pub mod cancel;
pub mod changes;
pub mod checkout;
pub mod lapses;
pub mod notices;
pub mod portal;
pub mod webhooks;

use axum::{Router, extract::FromRef, routing::post};

use tollgate_auth::AppState;
use tollgate_core::config::Config;

/// What billing adds to the server besides GraphQL: Stripe's webhook.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AppState: FromRef<S>,
{
    Router::new().route("/webhooks/stripe", post(webhooks::receive))
}

/// Billing's background work: announcing paid plans that stop counting.
pub fn jobs(app: &AppState) {
    lapses::spawn_job(app);
}

/// How long a subscription whose payments fail keeps its plan
/// (BILLING_GRACE_DAYS).
pub fn grace_period(config: &Config) -> chrono::Duration {
    chrono::Duration::from_std(config.billing_grace_period).unwrap_or(chrono::Duration::days(7))
}
