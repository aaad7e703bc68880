//! What deleting an organization means for its plan: a paid subscription
//! ends with it.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::plans::{
    stripe_api::{RemoteStatus, StripeApi},
    subscription,
};
use tollgate_auth::AppState;
use tollgate_core::error::AppResult;

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
