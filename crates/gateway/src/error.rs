//! Refusals in each API's own shape, so SDKs raise their usual
//! exceptions: OpenAI `{"error": {"message", "type", "param", "code"}}`,
//! Anthropic `{"type": "error", "error": {"type", "message", "code"?}}`.

use std::borrow::Cow;

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tollgate_core::error::{AppError, ErrorCode};
use tollgate_services::usage::authorize::UsageDenial;

use crate::wire::Api;

/// Seconds a caller refused only for calls in flight is told to wait: the
/// budget may well have room again as soon as one of them settles.
const IN_FLIGHT_RETRY_SECS: u64 = 2;

/// What kind of refusal it is; each API names it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A body or call the gateway cannot carry (400).
    InvalidRequest,
    /// A body over the limit (413).
    TooLarge,
    /// No usable API key (401).
    Authentication,
    /// A key that may not do this (403).
    Permission,
    /// No such callable model (404).
    NotFound,
    /// A budget, the daily limit or the rate (429).
    RateLimit,
    /// The gateway or its providers failed (5xx).
    Api,
    /// Every provider of the model is being skipped for now (503).
    Overloaded,
}

impl Kind {
    fn openai(self) -> &'static str {
        match self {
            Self::InvalidRequest | Self::TooLarge => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RateLimit => "rate_limit_error",
            Self::Api | Self::Overloaded => "api_error",
        }
    }

    fn anthropic(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::TooLarge => "request_too_large",
            Self::Authentication => "authentication_error",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found_error",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
            Self::Overloaded => "overloaded_error",
        }
    }
}

/// A refusal or failure of the gateway itself (a provider's own errors
/// are passed on as the provider sent them, not through this).
#[derive(Debug, Clone)]
pub struct GatewayError {
    /// HTTP status.
    pub status: StatusCode,
    /// Its kind, named per API.
    pub kind: Kind,
    /// What the caller reads.
    pub message: Cow<'static, str>,
    /// `error.code`: the UsageDenial, `rate_limited`, `model_not_found`, ...
    pub code: Option<&'static str>,
    /// `retry-after`, in whole seconds.
    pub retry_after: Option<u64>,
    /// `x-should-retry: false` for refusals a retry cannot cure.
    pub no_retry: bool,
    /// The outcome word the request metric counts it under.
    pub outcome: &'static str,
}

impl GatewayError {
    fn new(status: StatusCode, kind: Kind, message: impl Into<Cow<'static, str>>, outcome: &'static str) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            code: None,
            retry_after: None,
            no_retry: false,
            outcome,
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// No API key, an access token, or a key that does not work.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Kind::Authentication,
            "invalid API key: send an API key with the LLM scope (tg_live_...) as `Authorization: Bearer` or `x-api-key`",
            "unauthenticated",
        )
        .with_code("invalid_api_key")
    }

    /// A key without the LLM scope (or whose creator may no longer spend).
    pub fn missing_scope() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            Kind::Permission,
            "this API key lacks the LLM scope",
            "forbidden",
        )
        .with_code("missing_scope")
    }

    /// Any other FORBIDDEN (an address the key does not allow), with its message.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Kind::Permission, message, "forbidden")
    }

    /// A body the gateway cannot read.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Kind::InvalidRequest, message, "invalid")
    }

    /// A body over the limit.
    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Kind::TooLarge,
            format!("the request body is larger than {} MiB", limit_bytes / (1024 * 1024)),
            "invalid",
        )
    }

    /// A model the catalog does not know, or that no enabled provider serves.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Kind::NotFound,
            format!("the model `{model}` does not exist or is not available through this gateway"),
            "not_found",
        )
        .with_code("model_not_found")
    }

    /// A model the key's allow-list leaves out, or that the catalog has disabled.
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            Kind::Permission,
            format!("this API key may not call the model `{model}`"),
            "forbidden",
        )
        .with_code("model_not_allowed")
    }

    /// A model whose providers all speak another API than this endpoint's.
    pub fn wrong_endpoint(model: &str, api: Api) -> Self {
        let (endpoint, other) = if api.is_anthropic() {
            ("/v1/messages (Anthropic)", "/v1/chat/completions")
        } else {
            ("this OpenAI endpoint", "/v1/messages")
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            Kind::InvalidRequest,
            format!(
                "the endpoint and the provider do not match: `{model}` is served by providers that do not speak {endpoint}; call it through {other}"
            ),
            "invalid",
        )
        .with_code("endpoint_mismatch")
    }

    /// A reservation refused: a budget or the daily limit, with the
    /// seconds until the period or day ends (a short wait when only calls
    /// in flight stand in the way).
    pub fn refused(denial: UsageDenial, in_flight: bool, retry_after: u64) -> Self {
        let message = match denial {
            UsageDenial::OrganizationBudget => "the organization's token budget for this period is spent",
            UsageDenial::ApiKeyBudget => "this API key's token budget for this period is spent",
            UsageDenial::MemberBudget => "your token budget in this organization for this period is spent",
            UsageDenial::DailyRequests => "the organization's requests for today are spent",
            UsageDenial::ModelNotAllowed => "this API key may not call this model",
        };
        let message = if in_flight {
            format!("{message}, counting the calls in flight; retry when they finish")
        } else {
            message.to_owned()
        };
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, Kind::RateLimit, message, "refused")
            .with_code(denial_code(denial));
        error.retry_after = Some(if in_flight {
            IN_FLIGHT_RETRY_SECS
        } else {
            retry_after.max(1)
        });
        error.no_retry = !in_flight;
        error
    }

    /// The plan's requests per minute are spent.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            Kind::RateLimit,
            "too many requests per minute for this API key; retry later",
            "rate_limited",
        )
        .with_code("rate_limited");
        error.retry_after = Some(retry_after.max(1));
        error
    }

    /// No provider could be reached.
    pub fn unreachable() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            Kind::Api,
            "the model's provider could not be reached",
            "failed",
        )
    }

    /// No provider started answering in time, or the call ran past its time.
    pub fn timed_out() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            Kind::Api,
            "the model's provider did not answer in time",
            "timeout",
        )
    }

    /// The provider refused the gateway's own credentials: the gateway's
    /// configuration, not the caller's key, is at fault.
    pub fn provider_refused_credentials() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            Kind::Api,
            "the model's provider refused the gateway's credentials; tell the gateway's administrator",
            "upstream_error",
        )
    }

    /// Every provider of the model failed lately and is skipped for now.
    pub fn all_skipped(retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Kind::Overloaded,
            "every provider of this model is failing; retry later",
            "failed",
        );
        error.retry_after = Some(retry_after.max(1));
        error
    }

    /// The response in `api`'s shape.
    pub fn into_response(self, api: Api) -> Response {
        let body = if api.is_anthropic() {
            let mut error = json!({ "type": self.kind.anthropic(), "message": self.message });
            if let (Some(code), Value::Object(fields)) = (self.code, &mut error) {
                fields.insert("code".to_owned(), Value::from(code));
            }
            json!({ "type": "error", "error": error })
        } else {
            json!({ "error": {
                "message": self.message,
                "type": self.kind.openai(),
                "param": Value::Null,
                "code": self.code,
            } })
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.no_retry {
            headers.insert(
                HeaderName::from_static("x-should-retry"),
                HeaderValue::from_static("false"),
            );
        }
        response
    }
}

impl From<AppError> for GatewayError {
    fn from(error: AppError) -> Self {
        let message = error.client_message();
        match error.code() {
            ErrorCode::Unauthenticated => Self::unauthenticated(),
            ErrorCode::Forbidden => Self::forbidden(message),
            ErrorCode::RateLimited => Self::rate_limited(retry_after_of(&error).unwrap_or(1)),
            ErrorCode::BadUserInput => Self::invalid(message),
            ErrorCode::NotFound => Self::new(StatusCode::NOT_FOUND, Kind::NotFound, message, "not_found"),
            ErrorCode::ServiceUnavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, Kind::Api, message, "unavailable")
            }
            _ => {
                if let AppError::Internal(cause) = &error {
                    tracing::error!(error = ?cause, "gateway: internal error");
                }
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, Kind::Api, message, "internal")
            }
        }
    }
}

/// The retry-after of a RATE_LIMITED error.
fn retry_after_of(error: &AppError) -> Option<u64> {
    match error {
        AppError::Client { retry_after, .. } => *retry_after,
        AppError::AtIndex { error, .. } => retry_after_of(error),
        _ => None,
    }
}

/// The UsageDenial as the contract spells it.
pub fn denial_code(denial: UsageDenial) -> &'static str {
    match denial {
        UsageDenial::OrganizationBudget => "ORGANIZATION_BUDGET",
        UsageDenial::ApiKeyBudget => "API_KEY_BUDGET",
        UsageDenial::MemberBudget => "MEMBER_BUDGET",
        UsageDenial::DailyRequests => "DAILY_REQUESTS",
        UsageDenial::ModelNotAllowed => "MODEL_NOT_ALLOWED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn budget_refusals_carry_the_denial_and_say_not_to_retry() {
        let response = GatewayError::refused(UsageDenial::ApiKeyBudget, false, 3600).into_response(Api::Chat);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3600");
        assert_eq!(response.headers()["x-should-retry"], "false");
        let body = body_of(response).await;
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "API_KEY_BUDGET");
    }

    #[tokio::test]
    async fn in_flight_refusals_may_be_retried_soon() {
        let response = GatewayError::refused(UsageDenial::OrganizationBudget, true, 3600).into_response(Api::Messages);
        assert_eq!(response.headers()["retry-after"], "2");
        assert!(response.headers().get("x-should-retry").is_none());
        let body = body_of(response).await;
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "ORGANIZATION_BUDGET");
    }
}
