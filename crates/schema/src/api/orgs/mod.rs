//! Organizations in GraphQL: the organization, membership and invitation
//! types and their queries and mutations.

pub mod mutation;
pub mod query;
