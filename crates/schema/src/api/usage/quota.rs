//! An organization's quota in GraphQL.

use async_graphql::{Context, Object};

use crate::{
    context::ContextExt,
    error::ApiResult,
    scalars::{BigInt, Timestamp},
};
use tollgate_services::usage::quota::QuotaSnapshot;

/// A budget is spent when tokensUsed >= tokenLimit. Reported usage is
/// never refused for a budget (its tokens were already used, and billing
/// must see them); clients ask authorizeUsage before an LLM call. Counters
/// count events by the time they were received, so back-dated events land
/// in the current period; they always equal the sum of the events they
/// count. requestsToday counts usage events received since 00:00 UTC.
/// resetUsage restarts all of these counters.
pub struct Quota(pub QuotaSnapshot);

impl From<QuotaSnapshot> for Quota {
    fn from(snapshot: QuotaSnapshot) -> Self {
        Self(snapshot)
    }
}

#[Object]
impl Quota {
    /// Where tokensUsed starts counting: the period's start, or the last resetUsage inside the period.
    async fn period_start(&self) -> Timestamp {
        self.0.period_start.into()
    }

    /// The end of the current quota period.
    async fn period_end(&self) -> Timestamp {
        self.0.period_end.into()
    }

    /// Tokens counted in the current period, by receive time.
    async fn tokens_used(&self) -> BigInt {
        BigInt(self.0.tokens_used)
    }

    /// null = unlimited.
    async fn token_limit(&self) -> Option<BigInt> {
        self.0.token_limit.map(BigInt)
    }

    /// null = unlimited; 0 once spent, never negative.
    async fn remaining(&self) -> Option<BigInt> {
        self.0.remaining().map(BigInt)
    }

    /// Whether tokensUsed >= tokenLimit.
    async fn exceeded(&self) -> bool {
        self.0.exceeded()
    }

    /// Usage events received since 00:00 UTC.
    async fn requests_today(&self) -> i32 {
        i32::try_from(self.0.requests_today).unwrap_or(i32::MAX)
    }

    /// Usage events allowed per UTC day; null = unlimited.
    async fn daily_request_limit(&self) -> Option<i32> {
        self.0.daily_request_limit
    }

    /// Tokens held by gateway calls in flight: reserved before a call, released when its usage is recorded. tokensUsed + tokensReserved never exceeds tokenLimit through the gateway.
    async fn tokens_reserved(&self, ctx: &Context<'_>) -> ApiResult<BigInt> {
        let held = ctx.loaders()?.tokens_reserved.load_one(self.0.organization_id).await?;
        Ok(BigInt(held.unwrap_or(0)))
    }
}
