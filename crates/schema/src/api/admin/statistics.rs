//! The platform's headline numbers for staff.

use async_graphql::SimpleObject;

use crate::{api::billing::query::Plan, scalars::BigInt};
use tollgate_services::admin::stats;

/// How many organizations are on one plan.
#[derive(SimpleObject)]
pub struct PlanCount {
    /// The plan.
    plan: Plan,
    /// Organizations whose subscription is on it.
    organizations: BigInt,
}

/// The platform's headline numbers.
#[derive(SimpleObject)]
pub struct SystemStats {
    /// Accounts, not counting deleted ones.
    users: BigInt,
    /// Accounts that signed in within the last 30 days.
    #[graphql(name = "activeUsersLast30Days")]
    active_users_last_30_days: BigInt,
    /// Organizations, personal ones included.
    organizations: BigInt,
    /// API keys that work now.
    active_api_keys: BigInt,
    /// Tokens counted this UTC calendar month.
    tokens_this_month: BigInt,
    /// Every plan with how many organizations are on it.
    organizations_by_plan: Vec<PlanCount>,
}

impl From<stats::Stats> for SystemStats {
    fn from(stats: stats::Stats) -> Self {
        Self {
            users: BigInt(stats.users),
            active_users_last_30_days: BigInt(stats.active_users),
            organizations: BigInt(stats.organizations),
            active_api_keys: BigInt(stats.active_api_keys),
            tokens_this_month: BigInt(stats.tokens_this_month),
            organizations_by_plan: stats
                .organizations_by_plan
                .into_iter()
                .map(|(plan, count)| PlanCount {
                    plan: Plan(plan),
                    organizations: BigInt(count),
                })
                .collect(),
        }
    }
}
