//! Where each model is routed: `model_routes`, tried in position order.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use tollgate_db::schema::model_routes;

/// A row of `model_routes`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = model_routes, check_for_backend(diesel::pg::Pg))]
pub struct RouteRow {
    /// The catalog model.
    pub model_id: String,
    /// Order of trial, from 0.
    pub position: i32,
    /// The provider that serves it.
    pub provider_key: String,
    /// The model's name at that provider.
    pub upstream_model: String,
}

/// The routes of these models, each model's in order.
pub async fn of_models(
    conn: &mut AsyncPgConnection,
    model_ids: &[String],
) -> QueryResult<HashMap<String, Vec<RouteRow>>> {
    let rows: Vec<RouteRow> = model_routes::table
        .filter(model_routes::model_id.eq_any(model_ids))
        .order((model_routes::model_id, model_routes::position))
        .select(RouteRow::as_select())
        .load(conn)
        .await?;
    let mut by_model: HashMap<String, Vec<RouteRow>> = HashMap::new();
    for row in rows {
        by_model.entry(row.model_id.clone()).or_default().push(row);
    }
    Ok(by_model)
}
