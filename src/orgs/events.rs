//! The `membership.ended` event: someone stopped being a member of an
//! organization (removed, left, or the organization was deleted). Every
//! instance hears it on the event bus, so whatever that person holds open
//! there (usage subscriptions over websockets) can be closed at once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;

/// Topic of [`MembershipEnded`] on the event bus.
pub const MEMBERSHIP_ENDED: &str = "membership.ended";

/// What `membership.ended` carries: one person, one organization.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MembershipEnded {
    /// The organization they are no longer in.
    pub organization_id: Uuid,
    /// Who left or was removed.
    pub user_id: Uuid,
}

/// Tells every instance that these memberships ended. Called after the
/// change committed; a failure is logged (the membership is gone from the
/// database either way, and every new request checks it).
pub async fn announce(app: &AppState, ended: &[MembershipEnded]) {
    for event in ended {
        let payload = match serde_json::to_string(event) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "could not encode an ended membership");
                continue;
            }
        };
        if let Err(e) = app.events().publish(MEMBERSHIP_ENDED, &payload) {
            tracing::error!(error = ?e, "could not announce an ended membership");
        }
    }
}
