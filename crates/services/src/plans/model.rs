//! Plan rows and their queries.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_db::schema::plans;
use tollgate_db::text_enum;

text_enum! {
    /// How often a plan is billed.
    pub enum BillingInterval {
        /// Every month.
        Month => "MONTH",
        /// Every year.
        Year => "YEAR",
    }
}

/// A row of `plans`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanRow {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub price_cents: i32,
    pub currency: String,
    pub billing_interval: BillingInterval,
    pub monthly_token_limit: Option<i64>,
    pub daily_request_limit: Option<i32>,
    pub requests_per_minute: Option<i32>,
    pub max_members: Option<i32>,
    pub max_api_keys: Option<i32>,
    /// PostgreSQL arrays may hold NULLs, so diesel reads `Option`s; the
    /// table never stores one.
    pub features: Vec<Option<String>>,
    pub public: bool,
    pub stripe_price_id: Option<String>,
    pub sort_order: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Plans in display order; private ones only when asked.
pub async fn list(conn: &mut AsyncPgConnection, include_private: bool) -> QueryResult<Vec<PlanRow>> {
    let mut query = plans::table
        .select(PlanRow::as_select())
        .order((plans::sort_order, plans::key))
        .into_boxed();
    if !include_private {
        query = query.filter(plans::public.eq(true));
    }
    query.load(conn).await
}

/// Plans by id, private ones included (an organization may be on one).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .filter(plans::id.eq_any(ids))
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

/// Key of the plan every organization falls back to.
pub const FREE_PLAN_KEY: &str = "free";

/// The plan with this key, private ones included.
pub async fn find_by_key(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::key.eq(key))
        .select(PlanRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The plan sold at this Stripe price.
pub async fn find_by_stripe_prices(conn: &mut AsyncPgConnection, price_ids: &[String]) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .filter(plans::stripe_price_id.eq_any(price_ids))
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

/// Everything `upsertPlan` sets, validated.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = plans, treat_none_as_null = true)]
pub struct PlanFields {
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub price_cents: i32,
    pub currency: String,
    pub billing_interval: BillingInterval,
    pub monthly_token_limit: Option<i64>,
    pub daily_request_limit: Option<i32>,
    pub requests_per_minute: Option<i32>,
    pub max_members: Option<i32>,
    pub max_api_keys: Option<i32>,
    pub features: Vec<Option<String>>,
    pub public: bool,
    pub stripe_price_id: Option<String>,
}

/// Creates the plan with `fields.key`, or replaces the fields of the
/// existing one. A new plan is listed after the existing ones.
pub async fn upsert(conn: &mut AsyncPgConnection, fields: &PlanFields, now: DateTime<Utc>) -> QueryResult<PlanRow> {
    let next_sort_order = plans::table
        .select(diesel::dsl::max(plans::sort_order))
        .first::<Option<i32>>(conn)
        .await?
        .map_or(0, |max| max.saturating_add(1));
    diesel::insert_into(plans::table)
        .values((
            fields,
            plans::sort_order.eq(next_sort_order),
            plans::created_at.eq(now),
            plans::updated_at.eq(now),
        ))
        .on_conflict(plans::key)
        .do_update()
        .set((fields, plans::updated_at.eq(now)))
        .returning(PlanRow::as_returning())
        .get_result(conn)
        .await
}
