//! Thresholds: the ones a write crossed are claimed, and the organization's
//! managers are emailed about the highest.

use diesel_async::AsyncPgConnection;

use super::write::WriteContext;
use crate::usage::{quota::QuotaSnapshot, thresholds};
use tollgate_core::error::AppResult;

/// Claims the thresholds crossed from `before_tokens` to the quota `after`
/// and queues the managers' email for the highest claimed; returns the
/// claimed thresholds and whether emails were queued.
pub(super) async fn claim_and_email(
    conn: &mut AsyncPgConnection,
    cx: &WriteContext<'_>,
    before_tokens: i64,
    after: &QuotaSnapshot,
) -> AppResult<(Vec<i32>, bool)> {
    let organization_id = cx.organization_id;
    let crossed = thresholds::crossed(before_tokens, after.tokens_used, after.token_limit);
    let claimed = thresholds::claim(conn, organization_id, cx.windows.token_start, &crossed, cx.now).await?;
    let emailed = match (claimed.iter().max(), after.token_limit) {
        (Some(&highest), Some(limit)) => {
            thresholds::email_managers(conn, organization_id, highest, after.tokens_used, limit, cx.now).await? > 0
        }
        _ => false,
    };
    Ok((claimed, emailed))
}
