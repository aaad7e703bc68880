//! openBillingPortal: Stripe's hosted page where the customer changes
//! cards, plans and cancellation.

use uuid::Uuid;

use crate::plans::{stripe_api::StripeApi, subscription};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::return_url::allowed_return_url;

/// A Billing Portal session URL for the organization's customer;
/// BAD_USER_INPUT when it has none yet (nothing was ever bought).
pub async fn open_billing_portal(app: &AppState, organization_id: Uuid, return_url: &str) -> AppResult<String> {
    let config = app.config();
    let stripe = StripeApi::require(config)?;
    let return_url = allowed_return_url(config, "returnUrl", return_url)?;
    let mut conn = app.db().await?;
    let rows = subscription::find_by_organizations(&mut conn, &[organization_id]).await?;
    drop(conn);
    let customer_id = rows
        .into_iter()
        .next()
        .and_then(|row| row.stripe_customer_id)
        .ok_or_else(|| {
            AppError::bad_input(
                "organizationId",
                "the organization has no billing account yet; start a checkout first",
            )
        })?;
    stripe.create_portal_session(&customer_id, return_url).await
}
