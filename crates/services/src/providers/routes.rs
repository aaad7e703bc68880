//! Where each model is routed: `model_routes`, tried in position order.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::model::ProviderRow;
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::{model_routes, providers};

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

/// Most routes one model may have.
pub const MAX_ROUTES: usize = 10;
/// Longest upstream model name, in characters (the table's CHECK).
const MAX_UPSTREAM_MODEL_CHARS: usize = 200;

/// One route as staff sent it (ModelRouteInput).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The provider that serves it.
    pub provider_key: String,
    /// The model's name at that provider.
    pub upstream_model: String,
}

/// A route with its provider, as staff and `Model.callable` see it.
#[derive(Debug, Clone)]
pub struct RouteTo {
    /// The route.
    pub route: RouteRow,
    /// The provider it leads to.
    pub provider: ProviderRow,
}

/// Replaces the routes of `model_id` with `entries`, in their order; [] removes
/// them. Run it in the transaction that writes the model. BAD_USER_INPUT
/// naming `routes` for an unknown provider or a bad upstream name.
pub async fn replace(conn: &mut AsyncPgConnection, model_id: &str, entries: &[RouteEntry]) -> AppResult<Vec<RouteRow>> {
    let rows = check(model_id, entries)?;
    let keys: Vec<String> = rows.iter().map(|row| row.provider_key.clone()).collect();
    // Locked, so a provider deleted meanwhile cannot leave a route behind.
    let known: Vec<String> = providers::table
        .filter(providers::key.eq_any(&keys))
        .select(providers::key)
        .for_share()
        .load(conn)
        .await?;
    if let Some(unknown) = keys.iter().find(|key| !known.contains(key)) {
        return Err(AppError::bad_input(
            "routes",
            format!("no provider has the key {unknown:?}"),
        ));
    }
    diesel::delete(model_routes::table.filter(model_routes::model_id.eq(model_id)))
        .execute(conn)
        .await?;
    diesel::insert_into(model_routes::table)
        .values(&rows)
        .execute(conn)
        .await?;
    Ok(rows)
}

/// The rows `entries` become, checked.
fn check(model_id: &str, entries: &[RouteEntry]) -> AppResult<Vec<RouteRow>> {
    if entries.len() > MAX_ROUTES {
        return Err(AppError::bad_input(
            "routes",
            format!("a model has at most {MAX_ROUTES} routes"),
        ));
    }
    entries
        .iter()
        .zip(0..)
        .map(|(entry, position)| {
            let upstream_model = entry.upstream_model.trim();
            let length = upstream_model.chars().count();
            if length == 0 || length > MAX_UPSTREAM_MODEL_CHARS || upstream_model.chars().any(char::is_control) {
                return Err(AppError::bad_input(
                    "routes",
                    format!("upstreamModel must be 1 to {MAX_UPSTREAM_MODEL_CHARS} printable characters"),
                ));
            }
            Ok(RouteRow {
                model_id: model_id.to_owned(),
                position,
                provider_key: entry.provider_key.trim().to_owned(),
                upstream_model: upstream_model.to_owned(),
            })
        })
        .collect()
}

/// The routes of these models with their providers, each model's in
/// order, in one statement; every asked model gets an entry.
pub async fn with_providers(
    conn: &mut AsyncPgConnection,
    model_ids: &[String],
) -> QueryResult<HashMap<String, Vec<RouteTo>>> {
    let rows: Vec<(RouteRow, ProviderRow)> = model_routes::table
        .inner_join(providers::table)
        .filter(model_routes::model_id.eq_any(model_ids))
        .order((model_routes::model_id, model_routes::position))
        .select((RouteRow::as_select(), ProviderRow::as_select()))
        .load(conn)
        .await?;
    let mut by_model: HashMap<String, Vec<RouteTo>> = model_ids.iter().map(|id| (id.clone(), Vec::new())).collect();
    for (route, provider) in rows {
        by_model
            .entry(route.model_id.clone())
            .or_default()
            .push(RouteTo { route, provider });
    }
    Ok(by_model)
}

/// Whether a model with these routes can be called: it is enabled and one
/// of its routes leads to an enabled provider.
pub fn callable(model_enabled: bool, routes: &[RouteTo]) -> bool {
    model_enabled && routes.iter().any(|to| to.provider.enabled)
}
