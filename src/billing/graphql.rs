//! The Plan type and the plan queries.

use async_graphql::{Context, ID, Object};

use crate::{
    accounts::model::Role,
    billing::model::{self, BillingInterval, PlanRow},
    error::AppResult,
    graphql::{context::ContextExt, scalars::BigInt},
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
    async fn interval(&self) -> BillingInterval {
        self.0.billing_interval
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
    async fn plans(&self, ctx: &Context<'_>) -> AppResult<Vec<Plan>> {
        let app = ctx.app()?;
        let include_private = match ctx.principal()?.user_id() {
            Some(user_id) => ctx
                .loaders()?
                .users
                .load_one(user_id)
                .await?
                .is_some_and(|u| u.role == Role::Admin),
            None => false,
        };
        let mut conn = app.db().await?;
        let rows = model::list(&mut conn, include_private).await?;
        Ok(rows.into_iter().map(Plan).collect())
    }
}
