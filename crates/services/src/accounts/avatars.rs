//! `GET /avatars/{id}`: uploaded pictures, served from PostgreSQL so every
//! instance has them.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use crate::accounts::profile::{self, AvatarRow};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult, ErrorCode};

/// An upload gets a new id, so the bytes behind a URL never change and
/// may be cached for a year without revalidation.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// The picture is only ever an image: nothing in it may run or load.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'";

/// `GET /avatars/{id}`: the picture with its stored Content-Type and
/// long-lived caching headers; 304 when the client's ETag matches; 404 for
/// an unknown or malformed id.
pub async fn serve(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Ok(id) = Uuid::try_parse(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match load(&app, id).await {
        Ok(Some(avatar)) => respond(avatar, &headers),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            let status = match e.code() {
                ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::error!(error = ?e, avatar = %id, "could not serve an avatar");
            status.into_response()
        }
    }
}

async fn load(app: &AppState, id: Uuid) -> AppResult<Option<AvatarRow>> {
    let mut conn = app.db().await?;
    Ok(profile::find_avatar(&mut conn, id).await?)
}

fn respond(avatar: AvatarRow, request: &HeaderMap) -> Response {
    // The id names exactly one content for ever, so it is a strong ETag.
    let etag = format!("\"{}\"", avatar.id.simple());
    let content_type = match HeaderValue::from_str(&avatar.content_type) {
        Ok(value) => value,
        Err(e) => {
            let e = AppError::internal(anyhow::anyhow!("stored avatar content type: {e}"));
            tracing::error!(error = ?e, avatar = %avatar.id, "could not serve an avatar");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if matches_etag(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, content_type);
    (StatusCode::OK, headers, avatar.bytes).into_response()
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110
/// asks for this header) or is `*`.
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"b\""));
        assert!(matches_etag(&headers, "\"b\""));
        assert!(matches_etag(&headers, "\"a\""));
        assert!(!matches_etag(&headers, "\"c\""));
        assert!(!matches_etag(&HeaderMap::new(), "\"a\""));
    }
}
