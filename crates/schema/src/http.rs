//! GraphQL over HTTP: our own handlers around the executor, so that body
//! size, batching, methods and early error codes follow the contract.

use std::{net::SocketAddr, sync::Arc};

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
    HttpState,
    limits::{AnswerCap, answer_too_large, json_within},
    media::{BodyKind, ResponseMedia, forces_preflight},
    request::{refuse_forged_uploads, request_meta, server_error, with_request_data},
    websocket,
};
use tollgate_auth::principal;
use tollgate_core::error::{AppError, ErrorCode};

/// Largest JSON body accepted (a 1,000-input usage batch fits easily).
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;
/// Largest uploaded file: the largest picture, the one thing uploaded.
pub const MAX_UPLOAD_BYTES: usize = tollgate_services::accounts::profile::MAX_AVATAR_BYTES;
/// Largest multipart body: one file plus the operations and map parts.
pub const MAX_MULTIPART_BODY: usize = MAX_UPLOAD_BYTES + 64 * 1024;

/// `POST /graphql`: JSON or GraphQL multipart (uploads); one operation per
/// request. Any other body is refused with 415 before it is read: a
/// browser sends text/plain or a form cross-site without asking first.
pub async fn graphql_post(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let kind = match BodyKind::of(&headers) {
        Ok(kind) => kind,
        Err(message) => return refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::BadUserInput, &message),
    };
    let Some(media) = ResponseMedia::negotiate(&headers) else {
        return not_acceptable();
    };
    if kind == BodyKind::Multipart && !forces_preflight(&headers) {
        return refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadUserInput,
            "a multipart request must carry an Authorization, Apollo-Require-Preflight or X-Tollgate-Csrf \
             header, so that browsers ask this server before sending it from another site",
        );
    }
    let limit = match kind {
        BodyKind::Multipart => MAX_MULTIPART_BODY,
        BodyKind::Json => MAX_JSON_BODY,
    };
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
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
    execute(&http, peer, &headers, media, request, Method::Post).await
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
    let Some(media) = ResponseMedia::negotiate(&parts.headers) else {
        return not_acceptable();
    };
    let request = match parse_query_string(parts.uri.query().unwrap_or_default()) {
        Ok(request) => request,
        Err(message) => return refusal(StatusCode::BAD_REQUEST, ErrorCode::GraphqlParseFailed, &message),
    };
    execute(&http, peer, &parts.headers, media, request, Method::Get).await
}

/// The request parameters of a GET: `query`, `operationName`, and
/// `variables` and `extensions` as JSON text. (async-graphql's own parser
/// does not read `operationName`.)
fn parse_query_string(query_string: &str) -> Result<GqlRequest, String> {
    let mut request = GqlRequest::new(String::new());
    let mut seen = std::collections::HashSet::new();
    for (name, value) in url::form_urlencoded::parse(query_string.as_bytes()) {
        if !seen.insert(name.clone()) {
            return Err(format!("the parameter {name:?} is given twice"));
        }
        match name.as_ref() {
            "query" => request.query = value.into_owned(),
            "operationName" => request.operation_name = Some(value.into_owned()),
            "variables" => {
                request.variables =
                    serde_json::from_str(&value).map_err(|e| format!("variables is not a JSON object: {e}"))?;
            }
            "extensions" => {
                request.extensions =
                    serde_json::from_str(&value).map_err(|e| format!("extensions is not a JSON object: {e}"))?;
            }
            _ => {}
        }
    }
    Ok(request)
}

/// How the request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
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

async fn execute(
    http: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    media: ResponseMedia,
    mut request: GqlRequest,
    method: Method,
) -> Response {
    let persisted = match http.persisted.apply(&mut request).await {
        Ok(persisted) => persisted,
        Err(e) => return answer(media, GqlResponse::from_errors(vec![server_error(e)])),
    };
    if request.query.is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::GraphqlParseFailed,
            "the request has no query (nor a known extensions.persistedQuery)",
        );
    }
    if method == Method::Get && is_mutation(&request) {
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
    let app = &http.app;
    if let Err(e) = refuse_forged_uploads(&request) {
        return answer(media, GqlResponse::from_errors(vec![server_error(e)]));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let meta = request_meta(app, peer, headers);
    let principal = match principal::resolve(app, authorization, meta.client_ip).await {
        Ok(principal) => principal,
        Err(e) => return answer(media, GqlResponse::from_errors(vec![server_error(e)])),
    };
    let document = persisted
        .as_ref()
        .filter(|persisted| persisted.register)
        .map(|_| request.query.clone());
    let cap = Arc::new(AnswerCap::default());
    let request = with_request_data(app, request, principal, meta).data(cap.clone());
    let response = http.schema.execute(request).await;
    if let (Some(persisted), Some(document)) = (&persisted, document)
        && !is_request_error(&response)
    {
        http.persisted.register(persisted, &document).await;
    }
    answer_within(media, response, cap.bytes())
}

/// Whether the response is a request error: nothing was executed (no
/// `data`), and no error belongs to a field. Field errors always carry
/// their path (see [`crate::field_errors`]).
fn is_request_error(response: &GqlResponse) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// A GraphQL response as it goes over HTTP: a request error has no `data`
/// entry at all, as the GraphQL spec says.
#[derive(serde::Serialize)]
struct WireResponse<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'r async_graphql::Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'r [ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'r std::collections::BTreeMap<String, async_graphql::Value>,
}

/// Writes a GraphQL response in the negotiated media type. With
/// `application/json` every answer is 200. With
/// `application/graphql-response+json` a request error gets a 4xx or 5xx
/// status by its code, except PERSISTED_QUERY_NOT_FOUND, which clients
/// expect with 200.
fn answer(media: ResponseMedia, response: GqlResponse) -> Response {
    answer_within(media, response, None)
}

/// [`answer`], refusing with QUERY_TOO_COMPLEX an answer whose JSON would
/// take more than `cap` bytes (see [`AnswerCap`]).
fn answer_within(media: ResponseMedia, response: GqlResponse, cap: Option<usize>) -> Response {
    let request_error = is_request_error(&response);
    let code = response.errors.first().and_then(error_code);
    let status = match media {
        ResponseMedia::GraphqlResponse if request_error => request_error_status(code.as_deref()),
        _ => StatusCode::OK,
    };
    let wire = WireResponse {
        data: (!request_error).then_some(&response.data),
        errors: &response.errors,
        extensions: &response.extensions,
    };
    let Some(json) = json_within(&wire, cap.unwrap_or(usize::MAX)) else {
        return match cap {
            Some(max) => answer(media, GqlResponse::from_errors(vec![answer_too_large(max)])),
            // A tree of GraphQL values always has a JSON form.
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
    };
    let mut http_response = (status, json).into_response();
    let headers = http_response.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    http_response
}

fn error_code(error: &ServerError) -> Option<String> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.clone()),
        _ => None,
    }
}

/// The HTTP status of a request error under
/// `application/graphql-response+json`.
fn request_error_status(code: Option<&str>) -> StatusCode {
    match code {
        Some("PERSISTED_QUERY_NOT_FOUND") => StatusCode::OK,
        Some("UNAUTHENTICATED") => StatusCode::UNAUTHORIZED,
        Some("SERVICE_UNAVAILABLE") => StatusCode::SERVICE_UNAVAILABLE,
        Some("INTERNAL") => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// 406: the client accepts neither JSON type. The body is JSON anyway, for
/// the person reading it.
fn not_acceptable() -> Response {
    refusal(
        StatusCode::NOT_ACCEPTABLE,
        ErrorCode::BadUserInput,
        "Accept must allow application/graphql-response+json or application/json",
    )
}

/// A GraphQL-shaped error body for a request refused before execution.
fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    error_response(status, AppError::client(code, message.to_owned()))
}

/// A response carrying one error and no data.
pub fn error_response(status: StatusCode, error: AppError) -> Response {
    let response = GqlResponse::from_errors(vec![server_error(error)]);
    let wire = WireResponse {
        data: None,
        errors: &response.errors,
        extensions: &response.extensions,
    };
    (status, Json(wire)).into_response()
}
