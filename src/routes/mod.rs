//! The server's own endpoints, beside GraphQL and what the domains add:
//! health, readiness and metrics, and the playground.

pub mod health;
pub mod playground;
