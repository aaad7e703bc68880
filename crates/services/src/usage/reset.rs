//! resetUsage: staff restart an organization's counters for the rest of
//! the period. Nothing is deleted or zeroed: the reset moment becomes the
//! start of new counter rows (and of a new round of thresholds), and the
//! events stay.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::usage::quota::{self, QuotaSnapshot};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::organizations;
use tollgate_platform::audit::{self, AuditEntry};

/// Starts a new counter epoch for the organization at the app's now, audited
/// as `usage.reset` by `actor`; returns the fresh quota.
pub async fn reset(app: &AppState, actor: Uuid, organization_id: Uuid, ip: Option<String>) -> AppResult<QuotaSnapshot> {
    let mut conn = app.db().await?;
    let now = conn
        .transaction::<_, AppError, _>(async |conn| {
            // Exclusive: waits for recordings in flight, whose receive times
            // were read under the shared lock, so the reset time read after it
            // is later than all of them.
            organizations::table
                .find(organization_id)
                .select(organizations::id)
                .for_update()
                .first::<Uuid>(conn)
                .await
                .optional()?
                .ok_or_else(|| AppError::not_found("organization"))?;
            let now = app.now();
            let before = quota::of_organization(conn, organization_id, now).await?;
            mark(conn, organization_id, now).await?;
            let entry = AuditEntry::new("usage.reset", Some(actor), ip)
                .target("organization", organization_id)
                .in_organization(organization_id)
                .metadata(serde_json::json!({
                    "tokensUsedBefore": before.tokens_used,
                    "requestsTodayBefore": before.requests_today,
                }));
            audit::record(conn, entry, now).await?;
            Ok(now)
        })
        .await?;
    quota::of_organization(&mut conn, organization_id, now).await
}

async fn mark(conn: &mut AsyncPgConnection, organization_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    let updated = diesel::update(organizations::table.find(organization_id))
        .set(organizations::usage_reset_at.eq(now))
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(AppError::not_found("organization"));
    }
    Ok(())
}
