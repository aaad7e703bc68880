//! The Stripe calls billing makes, through async-stripe, and the one shape
//! of a subscription the rest of billing works with.
//!
//! Keeping Stripe's types inside this module means a change of API
//! version touches one file, and the webhook path never depends on how an
//! event payload was shaped: it only ever reads subscriptions fetched here.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::{
    billing_portal_session::CreateBillingPortalSession,
    subscription::{CancelSubscription, RetrieveSubscription, UpdateSubscription},
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;
use uuid::Uuid;

use crate::plans::subscription::SubscriptionStatus;
use tollgate_core::{
    config::Config,
    error::{AppError, AppResult, ErrorCode},
};

/// Metadata key (on customers and subscriptions) naming the organization.
pub const ORGANIZATION_METADATA_KEY: &str = "organization_id";

/// Per-attempt limit, so a hanging Stripe cannot hold a row lock for long.
const STRIPE_TIMEOUT: Duration = Duration::from_secs(20);

/// A client for the configured Stripe account.
pub struct StripeApi {
    client: stripe::Client,
}

impl StripeApi {
    /// The client, or `None` when billing is off (no STRIPE_SECRET_KEY).
    pub fn from_config(config: &Config) -> AppResult<Option<Self>> {
        let Some(key) = &config.stripe_secret_key else {
            return Ok(None);
        };
        // async-stripe appends `v1/...` to the base verbatim, so the base
        // must end with a slash; `Url` always serializes one after a host.
        let client = stripe::ClientBuilder::new(key.expose_secret())
            .url(config.stripe_api_base.as_str())
            .timeout(STRIPE_TIMEOUT)
            .build()
            .map_err(|e| AppError::internal(anyhow::anyhow!("building the Stripe client: {e}")))?;
        Ok(Some(Self { client }))
    }

    /// The client, or BAD_USER_INPUT when billing is off.
    pub fn require(config: &Config) -> AppResult<Self> {
        Self::from_config(config)?.ok_or_else(billing_off)
    }

    /// Creates the organization's customer. The idempotency key makes a
    /// retry after a lost answer return the same customer instead of a
    /// second one.
    pub async fn create_customer(&self, organization_id: Uuid, name: &str, email: Option<&str>) -> AppResult<String> {
        let mut request = CreateCustomer::new()
            .name(name)
            .metadata(organization_metadata(organization_id));
        if let Some(email) = email {
            request = request.email(email);
        }
        let key = IdempotencyKey::new(format!("tollgate-customer-{organization_id}"))
            .map_err(|e| AppError::internal(anyhow::anyhow!("idempotency key: {e}")))?;
        let customer = request
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|e| stripe_failure("creating a customer", e))?;
        Ok(customer.id.to_string())
    }

    /// A Checkout Session in subscription mode for one price.
    pub async fn create_checkout_session(&self, checkout: &CheckoutRequest<'_>) -> AppResult<CheckoutLink> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(checkout.price_id.to_owned());
        item.quantity = Some(1);
        let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
        subscription_data.metadata = Some(organization_metadata(checkout.organization_id));
        let session = CreateCheckoutSession::new()
            .mode(stripe_checkout::CheckoutSessionMode::Subscription)
            .customer(checkout.customer_id)
            .client_reference_id(checkout.organization_id.to_string())
            .line_items(vec![item])
            .subscription_data(subscription_data)
            .metadata(organization_metadata(checkout.organization_id))
            .success_url(checkout.success_url)
            .cancel_url(checkout.cancel_url)
            .send(&self.client)
            .await
            .map_err(|e| stripe_failure("creating a checkout session", e))?;
        let url = session
            .url
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("Stripe returned a checkout session without a url")))?;
        Ok(CheckoutLink {
            id: session.id.to_string(),
            url,
        })
    }

    /// A Billing Portal session for the customer; returns its URL.
    pub async fn create_portal_session(&self, customer_id: &str, return_url: &str) -> AppResult<String> {
        let session = CreateBillingPortalSession::new()
            .customer(customer_id)
            .return_url(return_url)
            .send(&self.client)
            .await
            .map_err(|e| stripe_failure("creating a billing portal session", e))?;
        Ok(session.url)
    }

    /// The subscription as Stripe has it now; `None` when Stripe does not
    /// know it (deleted in test mode, or another account's id).
    pub async fn retrieve_subscription(&self, id: &str) -> AppResult<Option<RemoteSubscription>> {
        match RetrieveSubscription::new(id).send(&self.client).await {
            Ok(subscription) => Ok(Some(RemoteSubscription::from(subscription))),
            Err(StripeError::Stripe(_, 404)) => Ok(None),
            Err(e) => Err(stripe_failure("retrieving a subscription", e)),
        }
    }

    /// Sets or clears the cancellation at the end of the current period.
    pub async fn set_cancel_at_period_end(&self, id: &str, cancel: bool) -> AppResult<RemoteSubscription> {
        let subscription = UpdateSubscription::new(id)
            .cancel_at_period_end(cancel)
            .send(&self.client)
            .await
            .map_err(|e| stripe_failure("updating a subscription", e))?;
        Ok(RemoteSubscription::from(subscription))
    }

    /// Ends the subscription now.
    pub async fn cancel_now(&self, id: &str) -> AppResult<RemoteSubscription> {
        let subscription = CancelSubscription::new(id)
            .send(&self.client)
            .await
            .map_err(|e| stripe_failure("cancelling a subscription", e))?;
        Ok(RemoteSubscription::from(subscription))
    }
}

/// What a Checkout Session is created for.
pub struct CheckoutRequest<'a> {
    /// The paying organization.
    pub organization_id: Uuid,
    /// Its Stripe customer.
    pub customer_id: &'a str,
    /// The plan's Stripe price.
    pub price_id: &'a str,
    /// Where Stripe sends the buyer after paying.
    pub success_url: &'a str,
    /// Where Stripe sends the buyer who gives up.
    pub cancel_url: &'a str,
}

/// A created Checkout Session.
#[derive(Debug, Clone)]
pub struct CheckoutLink {
    /// Stripe's id (`cs_...`).
    pub id: String,
    /// The hosted payment page.
    pub url: String,
}

/// Where a Stripe subscription stands, as billing applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteStatus {
    /// A status the subscription row can hold.
    Live(SubscriptionStatus),
    /// Canceled or incomplete_expired: the subscription is over and the
    /// organization is back on the free plan.
    Ended,
}

/// A Stripe subscription reduced to what billing stores.
#[derive(Debug, Clone)]
pub struct RemoteSubscription {
    /// `sub_...`.
    pub id: String,
    /// `cus_...`.
    pub customer_id: String,
    /// Its status, mapped.
    pub status: RemoteStatus,
    /// The prices of its items, in item order.
    pub price_ids: Vec<String>,
    /// The current billing period, from the items (the API version async-stripe
    /// speaks keeps periods there, not on the subscription).
    pub period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Whether it ends at the period's end.
    pub cancel_at_period_end: bool,
    /// The organization named in its metadata, when there is one.
    pub organization_id: Option<Uuid>,
}

impl From<stripe_billing::Subscription> for RemoteSubscription {
    fn from(subscription: stripe_billing::Subscription) -> Self {
        let items = &subscription.items.data;
        let start = items.iter().map(|item| item.current_period_start).min();
        let end = items.iter().map(|item| item.current_period_end).max();
        let period = match (start.and_then(timestamp), end.and_then(timestamp)) {
            (Some(start), Some(end)) if start < end => Some((start, end)),
            _ => None,
        };
        Self {
            id: subscription.id.to_string(),
            customer_id: subscription.customer.id().to_string(),
            status: map_status(&subscription.status),
            price_ids: items.iter().map(|item| item.price.id.to_string()).collect(),
            period,
            cancel_at_period_end: subscription.cancel_at_period_end,
            organization_id: subscription
                .metadata
                .get(ORGANIZATION_METADATA_KEY)
                .and_then(|id| Uuid::parse_str(id).ok()),
        }
    }
}

/// Stripe's status names onto ours; incomplete_expired reads as CANCELED,
/// which billing treats as over.
fn map_status(status: &stripe_billing::SubscriptionStatus) -> RemoteStatus {
    use stripe_billing::SubscriptionStatus as Stripe;
    match status {
        Stripe::Active => RemoteStatus::Live(SubscriptionStatus::Active),
        Stripe::Trialing => RemoteStatus::Live(SubscriptionStatus::Trialing),
        Stripe::PastDue => RemoteStatus::Live(SubscriptionStatus::PastDue),
        Stripe::Unpaid => RemoteStatus::Live(SubscriptionStatus::Unpaid),
        Stripe::Paused => RemoteStatus::Live(SubscriptionStatus::Paused),
        Stripe::Incomplete => RemoteStatus::Live(SubscriptionStatus::Incomplete),
        Stripe::Canceled | Stripe::IncompleteExpired => RemoteStatus::Ended,
        // A status newer than this client: not paid up, so not granted.
        _ => RemoteStatus::Live(SubscriptionStatus::Incomplete),
    }
}

fn timestamp(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

fn organization_metadata(organization_id: Uuid) -> HashMap<String, String> {
    HashMap::from([(ORGANIZATION_METADATA_KEY.to_owned(), organization_id.to_string())])
}

/// The refusal of every Stripe mutation while billing is off.
pub fn billing_off() -> AppError {
    AppError::client(ErrorCode::BadUserInput, "billing is not configured")
}

/// A failed Stripe call: logged in full, reported as INTERNAL (the client
/// can do nothing about it, and Stripe's text may name our account).
fn stripe_failure(doing: &'static str, error: StripeError) -> AppError {
    AppError::internal(anyhow::anyhow!("Stripe: {doing}: {error}"))
}
