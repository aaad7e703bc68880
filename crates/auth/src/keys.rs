//! API key credentials: secrets, scopes, rows, resolution and the
//! per-instance cache of resolved keys. Creating and revoking keys is the
//! keys domain's.

pub mod cache;
pub mod events;
pub mod model;
pub mod resolve;
pub mod scope;
pub mod secret;
