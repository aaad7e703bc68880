//! GET /v1/models: OpenAI's model list of the callable catalog models the
//! key may use.

use std::collections::{BTreeSet, HashSet};

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tollgate_auth::AppState;
use tollgate_core::error::AppError;
use tollgate_services::{
    providers,
    usage::{authorize::model_allowed, llm_models, pricing::Catalog},
};
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
    let mut conn = app.db().await?;
    let rows = llm_models::list(&mut conn).await.map_err(AppError::from)?;
    let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
    let routes = providers::routes::of_models(&mut conn, &ids)
        .await
        .map_err(AppError::from)?;
    let provider_keys: Vec<String> = routes
        .values()
        .flatten()
        .map(|route| route.provider_key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let enabled: HashSet<String> = providers::model::find_many(&mut conn, &provider_keys)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .filter(|provider| provider.enabled)
        .map(|provider| provider.key)
        .collect();
    drop(conn);
    let callable = |id: &str| {
        routes
            .get(id)
            .is_some_and(|routes| routes.iter().any(|route| enabled.contains(&route.provider_key)))
    };
    let data: Vec<Value> = rows
        .iter()
        .filter(|row| row.enabled && callable(&row.id))
        .filter(|row| {
            let catalog = Catalog::new(rows.clone());
            model_allowed(&catalog, key.allowed_models.as_deref(), &row.id)
        })
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
