//! What both the HTTP and the websocket handlers do to a request: read
//! the client's facts, refuse forged upload markers, attach the data every
//! resolver may ask for, and shape an error outside any field.

use std::net::SocketAddr;

use async_graphql::{Request as GqlRequest, ServerError};
use axum::http::{HeaderMap, header};
use tollgate_auth::{AppState, principal};
use tollgate_core::error::AppError;
use tollgate_platform::client_ip::client_ip;

use tollgate_core::request::RequestMeta;

use crate::limits::ensure_code;

/// Facts about the client, for sessions, rate limits and audit entries.
pub fn request_meta(app: &AppState, peer: SocketAddr, headers: &HeaderMap) -> RequestMeta {
    // Proxies may add their own header line instead of appending to the
    // client's: every line counts, in order (a non-text one as garbage).
    let forwarded_for: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("invalid"))
        .collect();
    let forwarded_for = (!forwarded_for.is_empty()).then(|| forwarded_for.join(","));
    RequestMeta::new(
        client_ip(peer.ip(), forwarded_for.as_deref(), &app.config().trusted_proxies),
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
    )
}

/// async-graphql marks uploaded files in variables as
/// `#__graphql_file__:<index>` and panics on a marker it did not write
/// (its Upload scalar unwraps the index). Clients never need to send one.
const UPLOAD_MARKER: &str = "#__graphql_file__:";

/// Refuses requests that carry an upload marker async-graphql did not put
/// there (in the document or in variables).
pub fn refuse_forged_uploads(request: &GqlRequest) -> Result<(), AppError> {
    fn forged(value: &async_graphql::Value, uploads: usize) -> bool {
        match value {
            async_graphql::Value::String(s) => s
                .strip_prefix(UPLOAD_MARKER)
                .is_some_and(|index| index.parse::<usize>().map_or(true, |i| i >= uploads)),
            async_graphql::Value::List(items) => items.iter().any(|v| forged(v, uploads)),
            async_graphql::Value::Object(fields) => fields.values().any(|v| forged(v, uploads)),
            _ => false,
        }
    }
    let uploads = request.uploads.len();
    if request.query.contains(UPLOAD_MARKER) || request.variables.values().any(|v| forged(v, uploads)) {
        return Err(AppError::bad_input(
            "file",
            "files must be sent as GraphQL multipart uploads",
        ));
    }
    Ok(())
}

/// Attaches what every resolver may ask for to a request (loaders come
/// with each execution: [`crate::loaders::fresh_loaders`]).
pub fn with_request_data(
    app: &AppState,
    request: GqlRequest,
    principal: principal::Principal,
    meta: RequestMeta,
) -> GqlRequest {
    request.data(app.clone()).data(principal).data(meta)
}

/// The wire form of an error outside any field.
pub fn server_error(error: AppError) -> ServerError {
    let code = error.code();
    let error = crate::error::to_graphql(error);
    let mut server_error = ServerError::new(error.message, None);
    server_error.extensions = error.extensions;
    ensure_code(&mut server_error, code);
    server_error
}
