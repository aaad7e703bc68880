//! The contract's rules for one reported input.

use chrono::{DateTime, Duration, Utc};

use crate::usage::pricing::Tokens;
use tollgate_core::error::{AppError, AppResult};

/// Largest token count of one kind in one event.
pub const MAX_TOKENS: i32 = 10_000_000;
/// Most inputs of one recordUsageBatch.
pub const MAX_BATCH: usize = 1_000;
/// Longest model name and requestId, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest metadata, as serialized JSON (keeps a bus message under 7 KB).
pub const MAX_METADATA_BYTES: usize = 4 * 1024;
/// How far back occurredAt may lie.
const MAX_AGE_DAYS: i64 = 35;
/// How far ahead occurredAt may lie (client clocks drift).
const MAX_AHEAD_MINUTES: i64 = 5;

/// One reported LLM call, as the client sent it.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// Required with a user's access token; implied by an API key.
    pub organization_id: Option<String>,
    /// The model name as the provider reported it.
    pub model: String,
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: i32,
    /// Part of promptTokens served from the provider's prompt cache.
    pub cached_tokens: i32,
    /// Completion tokens.
    pub completion_tokens: i32,
    /// Idempotency key: the same requestId in one organization is counted once; the same requestId with different numbers is CONFLICT.
    pub request_id: Option<String>,
    /// When the call happened; default now. At most 35 days back and 5 minutes ahead.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Anything the client wants kept with the event: JSON of at most 4 KiB.
    pub metadata: Option<serde_json::Value>,
}

/// One checked input.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The model name as reported, trimmed.
    pub model: String,
    /// Token counts.
    pub tokens: Tokens,
    /// Idempotency key.
    pub request_id: Option<String>,
    /// When the call happened; None: when it is received (the recording
    /// transaction's time, so it equals createdAt).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Client metadata.
    pub metadata: Option<serde_json::Value>,
    /// Reported by a client, or carried by the gateway.
    pub origin: Origin,
}

/// Where a report comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A client's recordUsage(Batch).
    Reported,
    /// A call the gateway carried.
    Proxy {
        /// The provider that served it.
        provider: Option<String>,
        /// True when the gateway counted the tokens itself.
        estimated: bool,
    },
}

/// Checks one input against the rules of the contract at `now`.
pub fn check(input: UsageReport, now: DateTime<Utc>) -> AppResult<Report> {
    let model = input.model.trim();
    check_name("model", model)?;
    for (field, value) in [
        ("promptTokens", input.prompt_tokens),
        ("cachedTokens", input.cached_tokens),
        ("completionTokens", input.completion_tokens),
    ] {
        if !(0..=MAX_TOKENS).contains(&value) {
            return Err(AppError::bad_input(
                field,
                format!("{field} must be between 0 and {MAX_TOKENS}"),
            ));
        }
    }
    if input.cached_tokens > input.prompt_tokens {
        return Err(AppError::bad_input(
            "cachedTokens",
            "cachedTokens are part of promptTokens and cannot exceed them",
        ));
    }
    if let Some(request_id) = &input.request_id {
        check_name("requestId", request_id)?;
    }
    let occurred_at = input.occurred_at;
    if let Some(occurred_at) = occurred_at
        && (occurred_at < now - Duration::days(MAX_AGE_DAYS)
            || occurred_at > now + Duration::minutes(MAX_AHEAD_MINUTES))
    {
        return Err(AppError::bad_input(
            "occurredAt",
            "occurredAt must be within the last 35 days and at most 5 minutes ahead",
        ));
    }
    let metadata = input.metadata.filter(|m| !m.is_null());
    if let Some(metadata) = &metadata {
        let size = serde_json::to_string(metadata).map_err(AppError::internal)?.len();
        if size > MAX_METADATA_BYTES {
            return Err(AppError::bad_input(
                "metadata",
                "metadata must be at most 4 KiB of JSON",
            ));
        }
    }
    Ok(unchecked(UsageReport { metadata, ..input }))
}

/// A model name or requestId: 1 to 200 characters, no control characters
/// (they would forge lines in logs and exports).
pub fn check_name(field: &'static str, value: &str) -> AppResult<()> {
    let length = value.chars().count();
    if length == 0 || length > MAX_NAME_CHARS {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// A repeat as a report, without the checks: the write path finds its
/// requestId stored and answers with the original.
pub(super) fn unchecked(input: UsageReport) -> Report {
    Report {
        model: input.model.trim().to_owned(),
        tokens: Tokens {
            prompt: i64::from(input.prompt_tokens),
            cached: i64::from(input.cached_tokens),
            completion: i64::from(input.completion_tokens),
        },
        request_id: input.request_id,
        occurred_at: input.occurred_at,
        metadata: input.metadata.filter(|m| !m.is_null()),
        origin: Origin::Reported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of as field;

    fn input() -> UsageReport {
        UsageReport {
            organization_id: None,
            model: " gpt-4o ".into(),
            prompt_tokens: 100,
            cached_tokens: 0,
            completion_tokens: 10,
            request_id: None,
            occurred_at: None,
            metadata: None,
        }
    }

    #[test]
    fn inputs_are_checked_field_by_field() {
        let now = Utc::now();
        assert_eq!(check(input(), now).unwrap().model, "gpt-4o");
        let with = |f: fn(&mut UsageReport)| {
            let mut input = input();
            f(&mut input);
            check(input, now)
        };
        assert_eq!(field(with(|i| i.prompt_tokens = -1)).as_deref(), Some("promptTokens"));
        assert_eq!(
            field(with(|i| i.completion_tokens = MAX_TOKENS + 1)).as_deref(),
            Some("completionTokens")
        );
        assert!(with(|i| i.completion_tokens = MAX_TOKENS).is_ok());
        assert_eq!(field(with(|i| i.cached_tokens = 101)).as_deref(), Some("cachedTokens"));
        assert_eq!(field(with(|i| i.model = "  ".into())).as_deref(), Some("model"));
        assert_eq!(field(with(|i| i.model = "m".repeat(201))).as_deref(), Some("model"));
        assert_eq!(
            field(with(|i| i.request_id = Some(String::new()))).as_deref(),
            Some("requestId")
        );
        assert_eq!(
            field(with(|i| i.request_id = Some("a\nb".into()))).as_deref(),
            Some("requestId")
        );
        let big = serde_json::json!({ "x": "y".repeat(MAX_METADATA_BYTES) });
        let mut too_big = input();
        too_big.metadata = Some(big);
        assert_eq!(field(check(too_big, now)).as_deref(), Some("metadata"));
        let mut old = input();
        old.occurred_at = Some(now - Duration::days(36));
        assert_eq!(field(check(old, now)).as_deref(), Some("occurredAt"));
        let mut ahead = input();
        ahead.occurred_at = Some(now + Duration::minutes(6));
        assert_eq!(field(check(ahead, now)).as_deref(), Some("occurredAt"));
    }
}
