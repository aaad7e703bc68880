//! The `user.role_changed` announcement: someone's platform role changed.
//! Every instance hears it ([`tollgate_platform::announcements`]), so a live
//! usage subscription that only staff may hold (an organization the person
//! is not a member of) ends at once when they stop being staff.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tollgate_platform::announcements::Announcement;

/// Topic of [`RoleChanged`].
pub const ROLE_CHANGED: &str = "user.role_changed";

/// What `user.role_changed` carries: whose role changed (the new role is
/// read from the database, which every instance asks anyway).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoleChanged {
    /// The person.
    pub user_id: Uuid,
}

impl RoleChanged {
    /// The `user.role_changed` announcement.
    pub fn announcement(&self) -> Announcement {
        Announcement::new(ROLE_CHANGED, self)
    }
}
