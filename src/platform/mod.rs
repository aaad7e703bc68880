//! Cross-cutting services: the clock, client addresses, health checks and
//! the client configuration query. (Event bus, rate limiter, mail outbox,
//! background jobs and metrics join here with the issues that need them.)

pub mod client_ip;
pub mod clock;
pub mod events;
pub mod graphql;
pub mod health;
pub mod mail;
pub mod rate_limit;
pub mod telemetry;
