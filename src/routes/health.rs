//! The operational endpoints: `/health` (the process runs), `/ready` (its
//! dependencies answer) and `/metrics`.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use tollgate_auth::AppState;
use tollgate_schema::HttpState;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: 200 while the process runs.
pub async fn health(State(http): State<HttpState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSecs": http.app.uptime_secs(),
    }))
}

/// `GET /metrics`, in the Prometheus text format.
pub async fn metrics(State(http): State<HttpState>) -> axum::response::Response {
    tollgate_platform::metrics::exposition(http.app.render_metrics())
}

/// `GET /ready`: 200 when PostgreSQL (and Redis, if configured) answer;
/// 503 naming the one that failed.
pub async fn ready(State(http): State<HttpState>) -> (StatusCode, Json<Value>) {
    let app = &http.app;
    let mut checks = serde_json::Map::new();
    checks.insert("database".into(), status(check_database(app).await));
    if app.redis().is_some() {
        checks.insert("redis".into(), status(check_redis(app).await));
    }
    let all_ok = checks.values().all(|v| v == "ok");
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let overall = if all_ok { "ok" } else { "unavailable" };
    (code, Json(json!({ "status": overall, "checks": checks })))
}

fn status(result: Result<(), String>) -> Value {
    match result {
        Ok(()) => Value::from("ok"),
        Err(reason) => {
            tracing::warn!(%reason, "readiness check failed");
            Value::from("unavailable")
        }
    }
}

async fn check_database(app: &AppState) -> Result<(), String> {
    let probe = async {
        let mut conn = app.pool().get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    within_probe_timeout(probe).await
}

async fn check_redis(app: &AppState) -> Result<(), String> {
    let Some(redis) = app.redis() else { return Ok(()) };
    let mut conn = redis.clone();
    let probe = async {
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    within_probe_timeout(probe).await
}

async fn within_probe_timeout(probe: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .map_err(|_| "timed out".to_owned())?
}
