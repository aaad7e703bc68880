//! Which model a call names and where it can go: the catalog model the
//! name resolves to, whether the key may call it, and its routes to
//! enabled providers that speak the endpoint's API.

use tollgate_auth::{AppState, KeyIdentity};
use tollgate_services::{
    providers::Upstream,
    usage::{authorize::model_allowed, directory, llm_models::ModelRow},
};

use crate::{error::GatewayError, wire::Api};

/// A callable model.
#[derive(Debug)]
pub struct Target {
    /// The catalog id (the metrics' label).
    pub model_id: String,
    /// The output to reserve when the caller sets no limit.
    pub preferred_output: i64,
    /// Its routes that speak the endpoint's API, in order.
    pub upstreams: Vec<Upstream>,
}

/// Resolves `model` for a call on `api` by `key`: 404 when unknown or
/// routed to no enabled provider, 403 when the key's allow-list leaves it
/// out or the catalog has it disabled, 400 when its providers all speak
/// another API. The catalog and routes are this instance's copy, checked
/// against `catalog_version` (read by the caller a moment ago): no
/// statement runs unless they changed.
pub async fn resolve(
    app: &AppState,
    key: &KeyIdentity,
    api: Api,
    model: &str,
    catalog_version: i64,
) -> Result<Target, GatewayError> {
    let directory = directory::at_version(app, catalog_version).await?;
    let catalog = &directory.catalog;
    let row = catalog
        .resolve(model)
        .ok_or_else(|| GatewayError::model_not_found(model))?;
    if !model_allowed(catalog, key.allowed_models.as_deref(), model) {
        return Err(GatewayError::model_not_allowed(model));
    }
    let upstreams = directory.upstreams(&row.id)?;
    if upstreams.is_empty() {
        return Err(GatewayError::model_not_found(model));
    }
    let speaking: Vec<Upstream> = upstreams.into_iter().filter(|u| api.accepts(u.kind)).collect();
    if speaking.is_empty() {
        return Err(GatewayError::wrong_endpoint(model, api));
    }
    Ok(Target {
        model_id: row.id.clone(),
        preferred_output: preferred_output(row, i64::from(app.config().gateway.default_max_output_tokens)),
        upstreams: speaking,
    })
}

/// What to reserve for output when the caller sets no limit: the model's
/// maxOutputTokens, else the configured default.
fn preferred_output(model: &ModelRow, default: i64) -> i64 {
    model.max_output_tokens.map_or(default, i64::from)
}
