//! Billing in GraphQL: plans, subscriptions, checkout and the portal.

pub mod mutation;
pub mod query;
