//! API keys in GraphQL.

pub mod query;
