//! startCheckout: the organization's Stripe customer (created once), then a
//! Checkout Session for a plan's price.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use crate::{
    billing::{changes, notices},
    plans::{
        model::{self, PlanRow},
        stripe_api::{CheckoutLink, CheckoutRequest, StripeApi},
        subscription,
    },
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::return_url::allowed_return_url;

/// What the caller asked to buy, and where Stripe sends them afterwards.
pub struct CheckoutInput<'a> {
    /// The paying organization (the caller's access is already checked).
    pub organization_id: Uuid,
    /// The plan's key.
    pub plan_key: &'a str,
    /// Back to the app after paying.
    pub success_url: &'a str,
    /// Back to the app after giving up.
    pub cancel_url: &'a str,
}

/// Creates a Checkout Session in subscription mode for the plan's price.
/// The organization's id travels as `client_reference_id` and in the
/// subscription's metadata, so the webhook finds the organization again.
pub async fn start_checkout(app: &AppState, input: &CheckoutInput<'_>) -> AppResult<CheckoutLink> {
    let config = app.config();
    let stripe = StripeApi::require(config)?;
    let success_url = allowed_return_url(config, "successUrl", input.success_url)?;
    let cancel_url = allowed_return_url(config, "cancelUrl", input.cancel_url)?;
    let mut conn = app.db().await?;
    let plan = purchasable_plan(&mut conn, input.plan_key).await?;
    let price_id = plan
        .stripe_price_id
        .as_deref()
        .ok_or_else(|| AppError::bad_input("planKey", "this plan is not sold through Stripe"))?;
    let customer_id = ensure_customer(&stripe, &mut conn, input.organization_id).await?;
    // The customer exists for good now; the session needs no lock.
    stripe
        .create_checkout_session(&CheckoutRequest {
            organization_id: input.organization_id,
            customer_id: &customer_id,
            price_id,
            success_url,
            cancel_url,
        })
        .await
}

/// A public plan by key; private plans are assigned by staff, not sold.
async fn purchasable_plan(conn: &mut AsyncPgConnection, key: &str) -> AppResult<PlanRow> {
    model::find_by_key(conn, key.trim())
        .await?
        .filter(|plan| plan.public)
        .ok_or_else(|| AppError::bad_input("planKey", "no such plan"))
}

/// The organization's Stripe customer, created on first use. The
/// subscription row stays locked while Stripe creates it, so concurrent
/// checkouts wait and then find the stored id instead of creating a
/// second customer.
async fn ensure_customer(stripe: &StripeApi, conn: &mut AsyncPgConnection, organization_id: Uuid) -> AppResult<String> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let row = subscription::lock(conn, organization_id)
            .await?
            .ok_or_else(|| AppError::not_found("organization"))?;
        if row.stripe_subscription_id.is_some() {
            return Err(AppError::conflict(
                "the organization already has a subscription; change or cancel it in the billing portal",
            ));
        }
        if let Some(customer_id) = row.stripe_customer_id {
            return Ok(customer_id);
        }
        let owner = notices::owner_of(conn, organization_id).await?;
        let (name, email) = match &owner {
            Some(owner) => (owner.organization_name.as_str(), Some(owner.email.as_str())),
            None => ("", None),
        };
        let customer_id = stripe.create_customer(organization_id, name, email).await?;
        changes::set_customer(conn, organization_id, &customer_id).await?;
        Ok(customer_id)
    })
    .await
}
