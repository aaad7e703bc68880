//! API keys: the credentials LLM tools report usage with.

pub mod service;
