//! Plans, subscriptions and quota periods (and, with the billing issue,
//! Stripe).

pub mod graphql;
pub mod model;
pub mod subscription;
