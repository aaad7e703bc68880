//! The billing mutations. Each checks access through the organization
//! rules table, then hands over to its service.

use async_graphql::{Context, ID, InputObject, Object};
use uuid::Uuid;

use crate::{
    access::{self, authorize},
    api::{
        billing::query::{BillingSubscription, CheckoutSession, Plan},
        enums as gql,
    },
    context::ContextExt,
    error::ApiResult,
    scalars::BigInt,
};
use tollgate_auth::users::Role;
use tollgate_core::error::AppError;
use tollgate_services::billing::{
    admin::{self, PlanDraft},
    cancel,
    changes::ChangeCause,
    checkout::{self, CheckoutInput},
    portal,
};

/// A plan as ADMINs write it.
#[derive(InputObject)]
pub struct PlanInput {
    /// Stable identifier: 1 to 40 of a-z, 0-9, '-' and '_'. An existing key
    /// updates that plan.
    pub key: String,
    /// Display name.
    pub name: String,
    /// One-line pitch.
    pub description: Option<String>,
    /// Price per interval in the currency's smallest unit; not negative.
    pub price_cents: i32,
    /// ISO 4217 code.
    #[graphql(default_with = "\"usd\".to_owned()")]
    pub currency: String,
    /// How often the price is charged.
    #[graphql(default_with = "gql::BillingInterval::Month")]
    pub interval: gql::BillingInterval,
    /// Tokens per quota period; null = unlimited.
    pub monthly_token_limit: Option<BigInt>,
    /// Usage events per UTC day; null = unlimited.
    pub daily_request_limit: Option<i32>,
    /// authorizeUsage calls per minute per API key; null = unlimited.
    pub requests_per_minute: Option<i32>,
    /// Members plus pending invitations (at least 1); null = unlimited.
    pub max_members: Option<i32>,
    /// Active API keys; null = unlimited.
    pub max_api_keys: Option<i32>,
    /// Selling points, in display order.
    #[graphql(default)]
    pub features: Vec<String>,
    /// Listed for everyone; private plans are assigned by staff.
    #[graphql(default = true)]
    pub public: bool,
    /// The Stripe price the plan is sold at (`price_...`); each price
    /// belongs to one plan.
    pub stripe_price_id: Option<String>,
}

impl From<PlanInput> for PlanDraft {
    fn from(input: PlanInput) -> Self {
        Self {
            key: input.key,
            name: input.name,
            description: input.description,
            price_cents: input.price_cents,
            currency: input.currency,
            interval: input.interval.into(),
            monthly_token_limit: input.monthly_token_limit.map(|limit| limit.0),
            daily_request_limit: input.daily_request_limit,
            requests_per_minute: input.requests_per_minute,
            max_members: input.max_members,
            max_api_keys: input.max_api_keys,
            features: input.features,
            public: input.public,
            stripe_price_id: input.stripe_price_id,
        }
    }
}

/// Mutations about plans and payment.
#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Stripe Checkout for a paid plan; OWNER/ADMIN.
    async fn start_checkout(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        plan_key: String,
        success_url: String,
        cancel_url: String,
    ) -> ApiResult<CheckoutSession> {
        let organization_id = organization_id_of(&organization_id)?;
        authorize(ctx, organization_id, "Mutation.startCheckout").await?;
        let input = CheckoutInput {
            organization_id,
            plan_key: &plan_key,
            success_url: &success_url,
            cancel_url: &cancel_url,
        };
        Ok(checkout::start_checkout(ctx.app()?, &input).await?.into())
    }

    /// Stripe billing portal URL; OWNER/ADMIN.
    async fn open_billing_portal(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        return_url: String,
    ) -> ApiResult<String> {
        let organization_id = organization_id_of(&organization_id)?;
        authorize(ctx, organization_id, "Mutation.openBillingPortal").await?;
        Ok(portal::open_billing_portal(ctx.app()?, organization_id, &return_url).await?)
    }

    /// At period end: cancelAtPeriodEnd becomes true. Now: the organization returns to the free plan, ACTIVE, with no stripeSubscriptionId.
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        #[graphql(default = true)] at_period_end: bool,
    ) -> ApiResult<BillingSubscription> {
        let organization_id = organization_id_of(&organization_id)?;
        authorize(ctx, organization_id, "Mutation.cancelSubscription").await?;
        let cause = cause(ctx, "cancelled", false)?;
        let row = cancel::cancel_subscription(ctx.app()?, organization_id, at_period_end, &cause).await?;
        Ok(BillingSubscription(row))
    }

    /// ADMIN: assign a plan without Stripe.
    async fn set_organization_plan(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        plan_key: String,
    ) -> ApiResult<BillingSubscription> {
        let organization_id = organization_id_of(&organization_id)?;
        authorize(ctx, organization_id, "Mutation.setOrganizationPlan").await?;
        let cause = cause(ctx, "admin", true)?;
        let row = admin::set_organization_plan(ctx.app()?, organization_id, &plan_key, &cause).await?;
        Ok(BillingSubscription(row))
    }

    /// ADMIN.
    async fn upsert_plan(&self, ctx: &Context<'_>, input: PlanInput) -> ApiResult<Plan> {
        require_platform_admin(ctx).await?;
        Ok(Plan(admin::upsert_plan(ctx.app()?, input.into()).await?))
    }
}

/// An organization id argument; an id that is not one of ours is as
/// invisible as any other organization.
fn organization_id_of(id: &ID) -> ApiResult<Uuid> {
    Ok(Uuid::parse_str(id).map_err(|_| AppError::not_found("organization"))?)
}

fn cause(ctx: &Context<'_>, reason: &'static str, always_audit: bool) -> ApiResult<ChangeCause> {
    Ok(ChangeCause {
        actor_id: Some(ctx.principal()?.require_user()?),
        ip: Some(ctx.request_meta()?.client_ip.to_string()),
        reason,
        always_audit,
    })
}

/// The caller's user id when they are a platform ADMIN; FORBIDDEN for
/// anyone else signed in.
async fn require_platform_admin(ctx: &Context<'_>) -> ApiResult<Uuid> {
    let user_id = ctx.principal()?.require_user()?;
    access::staff_standing(ctx).await?.require(Role::Admin)?;
    Ok(user_id)
}
