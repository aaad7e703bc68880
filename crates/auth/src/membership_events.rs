//! What an organization announces to every instance
//! ([`tollgate_platform::announcements`]): `membership.ended` when someone
//! stops being a member (removed, left, or the organization was deleted),
//! so whatever that person holds open there (usage subscriptions over
//! websockets, keys they created) stops at once; and
//! `membership.role_changed` when a member's role changes, so a key never
//! keeps powers its creator's new role lacks.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tollgate_platform::announcements::Announcement;

/// Topic of [`MembershipEnded`].
pub const MEMBERSHIP_ENDED: &str = "membership.ended";
/// Topic of [`MemberRoleChanged`].
pub const MEMBERSHIP_ROLE_CHANGED: &str = "membership.role_changed";

/// What `membership.ended` carries: one person, one organization.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MembershipEnded {
    /// The organization they are no longer in.
    pub organization_id: Uuid,
    /// Who left or was removed.
    pub user_id: Uuid,
}

impl MembershipEnded {
    /// The `membership.ended` announcement.
    pub fn announcement(&self) -> Announcement {
        Announcement::new(MEMBERSHIP_ENDED, self)
    }
}

/// What `membership.role_changed` carries (the new role is read from the
/// database, which every instance asks once its caches drop the old one).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberRoleChanged {
    /// The organization.
    pub organization_id: Uuid,
    /// The member whose role changed.
    pub user_id: Uuid,
}

impl MemberRoleChanged {
    /// The `membership.role_changed` announcement.
    pub fn announcement(&self) -> Announcement {
        Announcement::new(MEMBERSHIP_ROLE_CHANGED, self)
    }
}
