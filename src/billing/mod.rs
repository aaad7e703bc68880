//! Plans and (with the billing issue) subscriptions and Stripe.

pub mod graphql;
pub mod model;
