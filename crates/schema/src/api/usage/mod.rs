//! Usage in GraphQL: the model catalog, usage events, quotas and the live
//! usage subscription.

pub mod inputs;
pub mod mutation;
pub mod query;
pub mod quota;
pub mod subscription;
