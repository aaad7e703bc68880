//! Model catalog rows and their queries.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use tollgate_db::schema::models;

/// A row of `models`. Prices are integer micro-USD per million tokens.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = models, check_for_backend(diesel::pg::Pg))]
pub struct ModelRow {
    pub id: String,
    /// See `PlanRow::features` for why these are `Option`s.
    pub aliases: Vec<Option<String>>,
    pub provider: String,
    pub display_name: String,
    pub context_window: Option<i32>,
    pub input_micro_usd_per_mtok: i64,
    pub cached_input_micro_usd_per_mtok: Option<i64>,
    pub output_micro_usd_per_mtok: i64,
    pub enabled: bool,
    pub sort_order: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The most output tokens one call may produce; None = unknown.
    pub max_output_tokens: Option<i32>,
}

/// The whole catalog in display order.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<ModelRow>> {
    models::table
        .select(ModelRow::as_select())
        .order((models::sort_order, models::id))
        .load(conn)
        .await
}
