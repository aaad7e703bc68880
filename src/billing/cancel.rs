//! cancelSubscription, and the cancellation that deleting an organization
//! makes.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use crate::{
    app::AppState,
    billing::{
        changes::{self, ChangeCause},
        grace_period,
        stripe_api::{RemoteStatus, StripeApi},
        subscription::{self, SubscriptionRow},
    },
    error::{AppError, AppResult},
};

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

/// Ends the organization's paid subscription now, for `deleteOrganization`.
/// Call it inside the deleting transaction, before the organization's row
/// goes, and let its error abort the deletion: otherwise Stripe goes on
/// charging for an organization that no longer exists. Ok when there is
/// nothing to cancel.
pub async fn cancel_for_deleted_organization(
    app: &AppState,
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
) -> AppResult<()> {
    let Some(row) = subscription::lock(conn, organization_id).await? else {
        return Ok(());
    };
    let Some(subscription_id) = row.stripe_subscription_id else {
        return Ok(());
    };
    let Some(stripe) = StripeApi::from_config(app.config())? else {
        tracing::warn!(
            organization = %organization_id, subscription = %subscription_id,
            "deleting an organization with a Stripe subscription while billing is off; cancel it in Stripe by hand"
        );
        return Ok(());
    };
    // Stripe refuses to cancel twice; an ended subscription needs nothing.
    match stripe.retrieve_subscription(&subscription_id).await? {
        Some(remote) if remote.status != RemoteStatus::Ended => {
            stripe.cancel_now(&subscription_id).await?;
        }
        _ => {}
    }
    Ok(())
}
