//! What the recording instance publishes for each recorded event.
//!
//! Topic [`crate::usage::live::USAGE_RECORDED`] (`usage.recorded`),
//! payload the JSON of [`UsageUpdateMessage`], one message per event that
//! was recorded (duplicates publish nothing), after the transaction
//! commits, in the order the events were recorded. Subscribers turn it into
//! the GraphQL `UsageUpdate` (in the schema crate's `api::usage`). The
//! JSON stays under 7 KB (metadata is capped at 4 KiB, names at 200
//! characters), within PostgreSQL's 8000-byte NOTIFY limit.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::usage::{event::UsageEventRow, quota::QuotaSnapshot};
use tollgate_core::error::{AppError, AppResult};

/// One recorded event, as it travels between instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageUpdateMessage {
    /// The organization, read first to route the message.
    pub organization_id: Uuid,
    /// The event as stored.
    pub event: UsageEventRow,
    /// The organization's quota just after this event was counted.
    pub quota: QuotaSnapshot,
    /// 50, 80 or 100 when this event crossed that percent of the token
    /// limit (the highest, if several); announced once per window.
    pub threshold_crossed: Option<i32>,
}

impl UsageUpdateMessage {
    /// The bus payload.
    pub fn to_json(&self) -> AppResult<String> {
        serde_json::to_string(self).map_err(AppError::internal)
    }

    /// Reads a bus payload.
    pub fn from_json(payload: &str) -> AppResult<Self> {
        serde_json::from_str(payload).map_err(AppError::internal)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn the_largest_message_fits_a_postgres_notify() {
        let metadata = serde_json::json!({ "note": "\u{1}".repeat(4096 / 6) });
        let message = UsageUpdateMessage {
            organization_id: Uuid::now_v7(),
            event: UsageEventRow {
                id: Uuid::now_v7(),
                organization_id: Uuid::now_v7(),
                api_key_id: Some(Uuid::now_v7()),
                user_id: Some(Uuid::now_v7()),
                model: "m".repeat(200),
                model_id: Some("m".repeat(200)),
                prompt_tokens: i32::MAX,
                cached_tokens: i32::MAX,
                completion_tokens: i32::MAX,
                total_tokens: i32::MAX,
                cost_micro_usd: i64::MAX,
                priced: true,
                request_id: Some("r".repeat(200)),
                metadata: Some(metadata),
                occurred_at: Utc::now(),
                created_at: Utc::now(),
                source: crate::usage::event::UsageSource::Proxy,
                estimated: true,
                provider: Some("p".repeat(40)),
            },
            quota: QuotaSnapshot {
                organization_id: Uuid::now_v7(),
                period_start: Utc::now(),
                period_end: Utc::now(),
                tokens_used: i64::MAX,
                token_limit: Some(i64::MAX),
                requests_today: i64::MAX,
                daily_request_limit: Some(i32::MAX),
            },
            threshold_crossed: Some(100),
        };
        let json = message.to_json().unwrap();
        assert!(json.len() < 7 * 1024, "{} bytes", json.len());
        assert_eq!(UsageUpdateMessage::from_json(&json).unwrap(), message);
    }
}
