//! What an organization announces to every instance
//! ([`crate::platform::announcements`]): `membership.ended` when someone
//! stops being a member (removed, left, or the organization was deleted),
//! so whatever that person holds open there (usage subscriptions over
//! websockets, keys they created) stops at once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::platform::announcements::Announcement;

/// Topic of [`MembershipEnded`].
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

impl MembershipEnded {
    /// The `membership.ended` announcement.
    pub fn announcement(&self) -> Announcement {
        Announcement::new(MEMBERSHIP_ENDED, self)
    }
}
