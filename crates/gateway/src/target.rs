//! Which model a call names and where it can go: the catalog model the
//! name resolves to, whether the key may call it, and its routes to
//! enabled providers that speak the endpoint's API.

use tollgate_auth::{AppState, KeyIdentity};
use tollgate_services::{
    providers::{Upstream, upstreams_for},
    usage::{authorize::model_allowed, llm_models::ModelRow, pricing::Catalog},
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
/// another API.
pub async fn resolve(app: &AppState, key: &KeyIdentity, api: Api, model: &str) -> Result<Target, GatewayError> {
    let mut conn = app.db().await?;
    let catalog = Catalog::load(&mut conn)
        .await
        .map_err(tollgate_core::error::AppError::from)?;
    let row = catalog
        .resolve(model)
        .ok_or_else(|| GatewayError::model_not_found(model))?;
    if !model_allowed(&catalog, key.allowed_models.as_deref(), model) {
        return Err(GatewayError::model_not_allowed(model));
    }
    let upstreams = upstreams_for(&mut conn, app.secrets(), &row.id).await?;
    drop(conn);
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
    // The catalog's maxOutputTokens is not on ModelRow yet; until it is,
    // every model gets the default.
    let _ = model;
    default
}
