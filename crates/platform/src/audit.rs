//! Writing audit entries: who did what, to what, from where.
//!
//! Entries are written on the caller's connection, inside the caller's
//! transaction where there is one, so an entry exists exactly when the
//! change it records does.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use tollgate_db::schema::audit_log;

/// One audit entry about to be written.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Dotted verb from the contract, e.g. `user.login`.
    pub action: &'static str,
    /// Who did it (None for anonymous attempts).
    pub actor_id: Option<Uuid>,
    /// The organization concerned, if any.
    pub organization_id: Option<Uuid>,
    /// Kind of the object acted on, e.g. `session`.
    pub target_type: Option<&'static str>,
    /// Its id.
    pub target_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// Anything else worth keeping (never secrets).
    pub metadata: Value,
}

impl AuditEntry {
    /// An entry for `action` by `actor`, with no target yet.
    pub fn new(action: &'static str, actor_id: Option<Uuid>, ip: Option<String>) -> Self {
        Self {
            action,
            actor_id,
            organization_id: None,
            target_type: None,
            target_id: None,
            ip,
            metadata: Value::Object(Default::default()),
        }
    }

    /// Names the object acted on.
    pub fn target(mut self, target_type: &'static str, target_id: impl ToString) -> Self {
        self.target_type = Some(target_type);
        self.target_id = Some(target_id.to_string());
        self
    }

    /// Places the entry in an organization's log.
    pub fn in_organization(mut self, organization_id: Uuid) -> Self {
        self.organization_id = Some(organization_id);
        self
    }

    /// Adds details.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Writes `entry` at `now`.
pub async fn record(conn: &mut AsyncPgConnection, entry: AuditEntry, now: DateTime<Utc>) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::id.eq(Uuid::now_v7()),
            audit_log::organization_id.eq(entry.organization_id),
            audit_log::actor_id.eq(entry.actor_id),
            audit_log::action.eq(entry.action),
            audit_log::target_type.eq(entry.target_type),
            audit_log::target_id.eq(entry.target_id),
            audit_log::ip.eq(entry.ip),
            audit_log::metadata.eq(entry.metadata),
            audit_log::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
