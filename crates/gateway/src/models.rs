//! GET /v1/models: OpenAI's model list of the callable catalog models the
//! key may use.

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tollgate_auth::AppState;
use tollgate_services::usage::{authorize::model_allowed, directory};
use uuid::Uuid;

use crate::{caller, error::GatewayError, proxy::with_request_id, wire::Api};

/// GET /v1/models.
pub async fn list(State(app): State<AppState>, request: Request) -> Response {
    let request_id = Uuid::now_v7().to_string();
    let response = match models(&app, request).await {
        Ok(list) => Json(list).into_response(),
        Err(error) => error.into_response(Api::Chat),
    };
    with_request_id(response, &request_id)
}

async fn models(app: &AppState, request: Request) -> Result<Value, GatewayError> {
    let (parts, _) = request.into_parts();
    let key = caller::authenticate(app, &parts).await?;
    let directory = directory::current(app).await?;
    let catalog = &directory.catalog;
    let rows = catalog.models();
    let data: Vec<Value> = rows
        .iter()
        .filter(|row| row.enabled && directory.is_routed(&row.id))
        .filter(|row| model_allowed(catalog, key.allowed_models.as_deref(), &row.id))
        .map(|row| {
            json!({
                "id": row.id,
                "object": "model",
                "created": row.created_at.timestamp(),
                "owned_by": row.provider,
            })
        })
        .collect();
    Ok(json!({ "object": "list", "data": data }))
}
