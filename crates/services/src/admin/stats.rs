//! The platform's headline numbers for staff (`Query.stats`).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::{dsl::count_star, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::plans::{model as plans, model::PlanRow};
use tollgate_db::schema::{organizations, subscriptions, users};

/// How far back a sign-in makes a user "active".
pub const ACTIVE_WINDOW: Duration = Duration::days(30);

/// The numbers behind `SystemStats`.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Live accounts (tombstones of deleted ones excluded).
    pub users: i64,
    /// Live accounts that signed in within [`ACTIVE_WINDOW`].
    pub active_users: i64,
    /// Every organization.
    pub organizations: i64,
    /// API keys that work now.
    pub active_api_keys: i64,
    /// Tokens counted this UTC calendar month.
    pub tokens_this_month: i64,
    /// Every plan, in display order, with how many organizations are on it.
    pub organizations_by_plan: Vec<(PlanRow, i64)>,
}

/// Reads every number at `now`.
pub async fn read(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<Stats> {
    Ok(Stats {
        users: live_users(conn).await?,
        active_users: active_users(conn, now).await?,
        organizations: organizations::table.select(count_star()).get_result(conn).await?,
        active_api_keys: active_api_keys(conn, now).await?,
        tokens_this_month: tokens_this_month(conn, now).await?,
        organizations_by_plan: organizations_by_plan(conn).await?,
    })
}

async fn live_users(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    users::table
        .filter(users::deleted_at.is_null())
        .select(count_star())
        .get_result(conn)
        .await
}

async fn active_users(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<i64> {
    users::table
        .filter(users::deleted_at.is_null())
        .filter(users::last_login_at.ge(now - ACTIVE_WINDOW))
        .select(count_star())
        .get_result(conn)
        .await
}

/// API keys that work at `now`: not revoked, not expired.
async fn active_api_keys(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<i64> {
    crate::usage::reads::active_api_keys(conn, now).await
}

/// Tokens of every organization in the UTC calendar month of `now` (by
/// occurredAt, from the daily rollup).
async fn tokens_this_month(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<i64> {
    crate::usage::reads::tokens_this_month(conn, now).await
}

/// Every plan (private ones too) with its organization count; plans no
/// organization is on show 0.
async fn organizations_by_plan(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(PlanRow, i64)>> {
    let counts: HashMap<Uuid, i64> = subscriptions::table
        .group_by(subscriptions::plan_id)
        .select((subscriptions::plan_id, count_star()))
        .load::<(Uuid, i64)>(conn)
        .await?
        .into_iter()
        .collect();
    let all = plans::list(conn, true).await?;
    Ok(all
        .into_iter()
        .map(|plan| {
            let count = counts.get(&plan.id).copied().unwrap_or(0);
            (plan, count)
        })
        .collect())
}
