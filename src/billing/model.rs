//! Plan rows and their queries.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{db::schema::plans, text_enum};

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
