//! cancelSubscription (the cancellation that deleting an organization
//! makes is `plans::deletion`).

use diesel_async::AsyncConnection;
use uuid::Uuid;

use crate::{
    billing::{
        changes::{self, ChangeCause},
        grace_period,
    },
    plans::{
        stripe_api::StripeApi,
        subscription::{self, SubscriptionRow},
    },
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

/// Cancels the organization's Stripe subscription at the end of the
/// period (it keeps its plan until then) or now (back to the free plan at
/// once). Stripe's answer is applied before returning, so the caller sees
/// the new state and the webhook that follows changes nothing more.
pub async fn cancel_subscription(
    app: &AppState,
    organization_id: Uuid,
    at_period_end: bool,
    cause: &ChangeCause,
) -> AppResult<SubscriptionRow> {
    let stripe = StripeApi::require(app.config())?;
    let grace = grace_period(app.config());
    let mut conn = app.db().await?;
    let now = app.now();
    conn.transaction::<_, AppError, _>(async |conn| {
        let row = subscription::lock(conn, organization_id)
            .await?
            .ok_or_else(|| AppError::not_found("organization"))?;
        let subscription_id = row
            .stripe_subscription_id
            .clone()
            .ok_or_else(|| AppError::bad_input("organizationId", "the organization has no paid subscription"))?;
        let remote = if at_period_end {
            stripe.set_cancel_at_period_end(&subscription_id, true).await?
        } else {
            stripe.cancel_now(&subscription_id).await?
        };
        changes::apply_remote(conn, &row, &remote, grace, cause, now).await
    })
    .await
}
