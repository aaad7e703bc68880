//! After commit: wake the mailer, count the metrics, and send each
//! recorded event to every instance.

use std::collections::HashSet;

use uuid::Uuid;

use super::write::Published;
use crate::usage::{
    event::UsageEventRow, live::USAGE_RECORDED, live_message::UsageUpdateMessage, quota::QuotaSnapshot, thresholds,
};
use tollgate_auth::AppState;
use tollgate_core::error::AppResult;
use tollgate_platform::mail;

/// What follows a commit: the mailer is woken when the transaction queued
/// emails, the metrics count the new events, and each is published.
pub(super) fn after_commit(app: &AppState, written: &Published) {
    if written.emailed {
        mail::wake();
    }
    let tokens: u64 = written
        .messages
        .iter()
        .map(|m| u64::try_from(m.event.total_tokens).unwrap_or(0))
        .sum();
    app.metrics().usage_recorded(written.messages.len() as u64, tokens);
    publish(app, &written.messages);
}

/// Sends each recorded event to every instance (queued: it waits for
/// nothing). The events are committed whatever happens here, so a failure
/// is logged, not returned.
fn publish(app: &AppState, messages: &[UsageUpdateMessage]) {
    for message in messages {
        let sent = live_json(message).and_then(|json| app.events().publish(USAGE_RECORDED, &json));
        if let Err(error) = sent {
            tracing::warn!(error = ?error, event = %message.event.id, "usage event not published");
        }
    }
}

/// Largest message JSON sent as is. The bus escapes it once more inside
/// its envelope (at most doubling it), and PostgreSQL NOTIFY payloads stop
/// at 8000 bytes.
const LIVE_MESSAGE_BUDGET: usize = 3900;

/// The message as subscribers get it; an event whose metadata would not
/// fit travels without it (the stored event keeps it).
fn live_json(message: &UsageUpdateMessage) -> AppResult<String> {
    let json = message.to_json()?;
    if json.len() <= LIVE_MESSAGE_BUDGET {
        return Ok(json);
    }
    let mut slim = message.clone();
    slim.event.metadata = None;
    slim.to_json()
}

/// One bus message per new event, each with the quota as it stood just
/// after that event (running totals through the batch) and the highest
/// claimed threshold that event crossed.
pub(super) fn messages(
    organization_id: Uuid,
    events: Vec<UsageEventRow>,
    after: QuotaSnapshot,
    tokens: i64,
    requests: i64,
    claimed: &[i32],
) -> Vec<UsageUpdateMessage> {
    let claimed: HashSet<i32> = claimed.iter().copied().collect();
    let mut running = QuotaSnapshot {
        tokens_used: after.tokens_used - tokens,
        requests_today: after.requests_today - requests,
        ..after
    };
    events
        .into_iter()
        .map(|event| {
            let before = running.tokens_used;
            running.tokens_used += i64::from(event.total_tokens);
            running.requests_today += 1;
            let threshold_crossed = thresholds::crossed(before, running.tokens_used, running.token_limit)
                .into_iter()
                .filter(|t| claimed.contains(t))
                .max();
            UsageUpdateMessage {
                organization_id,
                event,
                quota: running,
                threshold_crossed,
            }
        })
        .collect()
}
