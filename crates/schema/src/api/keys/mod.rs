//! API keys in GraphQL.

pub mod mutation;
pub mod query;
