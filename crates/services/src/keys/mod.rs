//! API keys: the credentials LLM tools report usage with.

pub mod service;

pub use tollgate_auth::keys::{cache, events, model, resolve, scope, secret};
