//! The `user.role_changed` event: someone's platform role changed. Every
//! instance hears it on the event bus, so a live usage subscription that
//! only staff may hold (an organization the person is not a member of)
//! ends at once when they stop being staff.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;

/// Topic of [`RoleChanged`] on the event bus.
pub const ROLE_CHANGED: &str = "user.role_changed";

/// What `user.role_changed` carries: whose role changed (the new role is
/// read from the database, which every instance asks anyway).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoleChanged {
    /// The person.
    pub user_id: Uuid,
}

/// Tells every instance that the person's role changed. Called after the
/// change committed; a failure is logged (every new request reads the
/// role afresh either way).
pub async fn announce_role_changed(app: &AppState, user_id: Uuid) {
    let sent = match serde_json::to_string(&RoleChanged { user_id }) {
        Ok(payload) => app.events().publish(ROLE_CHANGED, &payload),
        Err(e) => Err(crate::error::AppError::internal(e)),
    };
    if let Err(e) = sent {
        tracing::error!(error = ?e, "could not announce a role change");
    }
}
