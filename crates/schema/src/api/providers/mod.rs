//! The gateway's providers and model routes in GraphQL: the Provider and
//! ModelRoute types, the staff query and the ADMIN mutations, and the
//! resolvers of Model.callable and Model.routes.

pub mod inputs;
pub mod mutation;
pub mod query;
