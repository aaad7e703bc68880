//! The `api_key.revoked` announcement: a key stopped working (revoked, or
//! its creator left the organization). Every instance hears it
//! ([`tollgate_platform::announcements`]): key caches drop the key and
//! websocket connections authenticated with it close at once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tollgate_platform::announcements::Announcement;

/// Topic of [`KeyRevoked`].
pub const KEY_REVOKED: &str = "api_key.revoked";

/// What `api_key.revoked` carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRevoked {
    /// The key that stopped working.
    pub key_id: Uuid,
}

/// One `api_key.revoked` announcement per key.
pub fn revoked(key_ids: &[Uuid]) -> Vec<Announcement> {
    key_ids
        .iter()
        .map(|key_id| Announcement::new(KEY_REVOKED, &KeyRevoked { key_id: *key_id }))
        .collect()
}
