//! GraphQL over HTTP: our own handlers around the executor, so that body
//! size, batching, methods and early error codes follow the contract.

use std::net::SocketAddr;

use async_graphql::{
    BatchRequest, ParseRequestError, Request as GqlRequest, Response as GqlResponse, ServerError,
    http::{MultipartOptions, receive_batch_body},
    parser::types::OperationType,
};
use axum::{
    Json,
    body::{Body, Bytes},
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    app::{AppState, HttpState},
    auth::principal,
    error::{AppError, ErrorCode},
    graphql::{context::RequestMeta, limits::ensure_code, websocket},
    platform::client_ip::client_ip,
};

/// Largest JSON body accepted (a 1,000-input usage batch fits easily).
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;
/// Largest uploaded file.
pub const MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024;
/// Largest multipart body: one file plus the operations and map parts.
pub const MAX_MULTIPART_BODY: usize = MAX_UPLOAD_BYTES + 64 * 1024;

/// `POST /graphql`: JSON or GraphQL multipart (uploads); one operation per
/// request.
pub async fn graphql_post(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let multipart = content_type.as_deref().is_some_and(|ct| ct.starts_with("multipart/"));
    let limit = if multipart { MAX_MULTIPART_BODY } else { MAX_JSON_BODY };
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    // Only a per-file cap: async-graphql's whole-stream cap (size x files)
    // would count the operations part against the file and refuse an upload
    // of exactly 2 MiB; read_body already bounds the whole body.
    let options = MultipartOptions::default().max_file_size(MAX_UPLOAD_BYTES);
    let batch = receive_batch_body(content_type, futures_util::io::Cursor::new(bytes), options).await;
    let request = match batch {
        Ok(BatchRequest::Single(request)) => request,
        Ok(BatchRequest::Batch(_)) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                "batched requests are not supported",
            );
        }
        Err(ParseRequestError::PayloadTooLarge) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        Err(e) => return refusal(StatusCode::BAD_REQUEST, ErrorCode::GraphqlParseFailed, &e.to_string()),
    };
    execute(&http, peer, &headers, request).await
}

/// `GET /graphql`: a websocket upgrade for subscriptions, or a query in the
/// query string. Mutations are refused over GET (405), since GET must be
/// safe to repeat and to prefetch.
pub async fn graphql_get(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    if is_websocket_upgrade(&parts.headers) {
        return match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket::accept(http, peer, &parts.headers, upgrade),
            Err(rejection) => rejection.into_response(),
        };
    }
    let query_string = parts.uri.query().unwrap_or_default();
    let request = match async_graphql::http::parse_query_string(query_string) {
        Ok(request) => request,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, ErrorCode::GraphqlParseFailed, &e.to_string()),
    };
    if is_mutation(&request) {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadUserInput,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    execute(&http, peer, &parts.headers, request).await
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the operation the request would run is a mutation. A document
/// that does not parse is left to the executor, which reports it.
fn is_mutation(request: &GqlRequest) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let operation_type = match (&request.operation_name, document.operations) {
        (None, operations) => operations.iter().next().map(|(_, op)| op.node.ty),
        (Some(name), async_graphql::parser::types::DocumentOperations::Multiple(ops)) => {
            ops.iter().find(|(n, _)| n.as_str() == name).map(|(_, op)| op.node.ty)
        }
        (Some(_), async_graphql::parser::types::DocumentOperations::Single(op)) => Some(op.node.ty),
    };
    operation_type == Some(OperationType::Mutation)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if is_length_limit(&e) => Err(StatusCode::PAYLOAD_TOO_LARGE.into_response()),
        Err(_) => Err(refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::GraphqlParseFailed,
            "the request body could not be read",
        )),
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

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
/// with each execution: [`crate::graphql::loaders::FreshLoaders`]).
pub fn with_request_data(
    app: &AppState,
    request: GqlRequest,
    principal: principal::Principal,
    meta: RequestMeta,
) -> GqlRequest {
    request.data(app.clone()).data(principal).data(meta)
}

async fn execute(http: &HttpState, peer: SocketAddr, headers: &HeaderMap, request: GqlRequest) -> Response {
    let app = &http.app;
    if let Err(e) = refuse_forged_uploads(&request) {
        return error_response(StatusCode::OK, e);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let meta = request_meta(app, peer, headers);
    let principal = match principal::resolve(app, authorization, meta.client_ip).await {
        Ok(principal) => principal,
        Err(e) => return error_response(StatusCode::OK, e),
    };
    let response = http
        .schema
        .execute(with_request_data(app, request, principal, meta))
        .await;
    Json(response).into_response()
}

/// A GraphQL-shaped error body for a request refused before execution.
fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    error_response(status, AppError::client(code, message.to_owned()))
}

/// A response carrying one error and no data.
pub fn error_response(status: StatusCode, error: AppError) -> Response {
    (status, Json(GqlResponse::from_errors(vec![server_error(error)]))).into_response()
}

/// The wire form of an error outside any field.
pub fn server_error(error: AppError) -> ServerError {
    let code = error.code();
    let error = error.into_graphql();
    let mut server_error = ServerError::new(error.message, None);
    server_error.extensions = error.extensions;
    ensure_code(&mut server_error, code);
    server_error
}
