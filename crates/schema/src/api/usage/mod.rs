//! Usage in GraphQL: the model catalog, usage events, quotas and live
//! usage (the GraphQL subscription root; billing subscriptions are in
//! [`super::billing`]).

pub mod inputs;
pub mod live_usage;
pub mod mutation;
pub mod query;
pub mod quota;
