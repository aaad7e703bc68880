//! The `api_key.revoked` event: a key stopped working (revoked, or its
//! creator left the organization or was suspended). Every instance hears it
//! on the event bus: key caches drop the key and websocket connections
//! authenticated with it close at once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Topic of [`KeyRevoked`] on the event bus.
pub const KEY_REVOKED: &str = "api_key.revoked";

/// What `api_key.revoked` carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRevoked {
    /// The key that stopped working.
    pub key_id: Uuid,
}
