//! API keys: the credentials LLM tools report usage with.

pub mod cache;
pub mod events;
pub mod model;
pub mod resolve;
pub mod scope;
pub mod secret;
pub mod service;
