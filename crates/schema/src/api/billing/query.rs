//! The Plan, BillingSubscription and CheckoutSession types, the plan
//! queries, and the billing fields of Organization.

use async_graphql::{Context, ID, Object, SimpleObject};
use uuid::Uuid;

use crate::{
    access,
    api::enums as gql,
    context::ContextExt,
    error::ApiResult,
    scalars::{BigInt, Timestamp},
};
use tollgate_auth::users::Role;
use tollgate_core::error::AppError;
use tollgate_services::plans::{
    model::{self, FREE_PLAN_KEY, PlanRow},
    stripe_api::CheckoutLink,
    subscription::{SubscriptionRow, calendar_month},
};

/// Something an organization can subscribe to.
pub struct Plan(pub PlanRow);

#[Object]
impl Plan {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Stable identifier: free, pro, enterprise, ...
    async fn key(&self) -> &str {
        &self.0.key
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// One-line pitch.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// Price per interval in the currency's smallest unit.
    async fn price_cents(&self) -> i32 {
        self.0.price_cents
    }

    /// ISO 4217 code, lowercase as Stripe writes it.
    async fn currency(&self) -> &str {
        &self.0.currency
    }

    /// How often the price is charged.
    async fn interval(&self) -> gql::BillingInterval {
        self.0.billing_interval.into()
    }

    /// Tokens per quota period (see Quota); null = unlimited.
    async fn monthly_token_limit(&self) -> Option<BigInt> {
        self.0.monthly_token_limit.map(BigInt)
    }

    /// Usage events per UTC day (each batch input is one); checked by authorizeUsage; null = unlimited.
    async fn daily_request_limit(&self) -> Option<i32> {
        self.0.daily_request_limit
    }

    /// authorizeUsage calls per minute per API key (RATE_LIMITED beyond); null = unlimited.
    async fn requests_per_minute(&self) -> Option<i32> {
        self.0.requests_per_minute
    }

    /// Members plus pending invitations; null = unlimited.
    async fn max_members(&self) -> Option<i32> {
        self.0.max_members
    }

    /// Active API keys; null = unlimited.
    async fn max_api_keys(&self) -> Option<i32> {
        self.0.max_api_keys
    }

    /// Selling points, in display order.
    async fn features(&self) -> Vec<&str> {
        self.0.features.iter().flatten().map(String::as_str).collect()
    }

    /// Listed for everyone; private plans are assigned by staff.
    async fn public(&self) -> bool {
        self.0.public
    }

    /// Stripe price of a paid plan; null for free and admin-assigned plans.
    async fn stripe_price_id(&self) -> Option<&str> {
        self.0.stripe_price_id.as_deref()
    }
}

/// Queries about plans.
#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// Public plans for everyone; ADMIN sees all.
    async fn plans(&self, ctx: &Context<'_>) -> ApiResult<Vec<Plan>> {
        let app = ctx.app()?;
        let include_private = access::staff_role(ctx).await? == Some(Role::Admin);
        let mut conn = app.db().await?;
        let rows = model::list(&mut conn, include_private).await?;
        Ok(rows.into_iter().map(Plan).collect())
    }
}

/// An organization's subscription: what it pays for (or was given), and
/// where the payments stand.
pub struct BillingSubscription(pub SubscriptionRow);

#[Object]
impl BillingSubscription {
    /// The subscribed plan. Organization.plan is the plan in effect, which
    /// is the free plan once a grace period or a cancelled period has ended.
    async fn plan(&self, ctx: &Context<'_>) -> ApiResult<Plan> {
        load_plan(ctx, self.0.plan_id).await
    }

    /// Stripe's status; free and admin-assigned plans are ACTIVE.
    async fn status(&self) -> gql::SubscriptionStatus {
        self.0.status.into()
    }

    /// Start of the billing period; the UTC calendar month on plans
    /// without a Stripe period.
    async fn current_period_start(&self, ctx: &Context<'_>) -> ApiResult<Timestamp> {
        Ok(self.period(ctx)?.0.into())
    }

    /// End of the billing period (exclusive).
    async fn current_period_end(&self, ctx: &Context<'_>) -> ApiResult<Timestamp> {
        Ok(self.period(ctx)?.1.into())
    }

    /// True when the subscription ends with the current period.
    async fn cancel_at_period_end(&self) -> bool {
        self.0.cancel_at_period_end
    }

    /// Stripe's id (`sub_...`); null for free and admin-assigned plans.
    async fn stripe_subscription_id(&self) -> Option<&str> {
        self.0.stripe_subscription_id.as_deref()
    }
}

impl BillingSubscription {
    fn period(&self, ctx: &Context<'_>) -> ApiResult<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
        if let (Some(start), Some(end)) = (self.0.current_period_start, self.0.current_period_end) {
            return Ok((start, end));
        }
        let month = calendar_month(ctx.app()?.now());
        Ok((month.start, month.end))
    }
}

/// A Stripe Checkout Session to send the buyer to.
#[derive(SimpleObject)]
pub struct CheckoutSession {
    /// Stripe's id (`cs_...`).
    pub id: String,
    /// The hosted payment page.
    pub url: String,
}

impl From<CheckoutLink> for CheckoutSession {
    fn from(link: CheckoutLink) -> Self {
        Self {
            id: link.id,
            url: link.url,
        }
    }
}

/// `Organization.subscription`, batched through the billing subscriptions
/// loader.
pub async fn billing_subscription_of(ctx: &Context<'_>, organization_id: Uuid) -> ApiResult<BillingSubscription> {
    Ok(BillingSubscription(
        billing_subscription_row(ctx, organization_id).await?,
    ))
}

/// `Organization.plan`: the plan in effect now (see
/// [`SubscriptionRow::plan_counts_at`]), batched through the loaders.
pub async fn plan_of(ctx: &Context<'_>, organization_id: Uuid) -> ApiResult<Plan> {
    let row = billing_subscription_row(ctx, organization_id).await?;
    if row.plan_counts_at(ctx.app()?.now()) {
        return load_plan(ctx, row.plan_id).await;
    }
    // Rare (a lapsed paid plan), so one query rather than a loader.
    let mut conn = ctx.app()?.db().await?;
    let free = model::find_by_key(&mut conn, FREE_PLAN_KEY)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the free plan is missing")))?;
    Ok(Plan(free))
}

async fn billing_subscription_row(ctx: &Context<'_>, organization_id: Uuid) -> ApiResult<SubscriptionRow> {
    Ok(ctx
        .loaders()?
        .billing_subscriptions
        .load_one(organization_id)
        .await?
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "organization {organization_id} has no subscription row"
            ))
        })?)
}

async fn load_plan(ctx: &Context<'_>, plan_id: Uuid) -> ApiResult<Plan> {
    Ok(ctx
        .loaders()?
        .plans
        .load_one(plan_id)
        .await?
        .map(Plan)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("plan {plan_id} missing")))?)
}
