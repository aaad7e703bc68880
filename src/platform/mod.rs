//! Cross-cutting services: the clock, client addresses, health checks,
//! metrics, the playground, the event bus, announcements (and the caches
//! they keep honest), rate limiter, mail outbox and the client
//! configuration query.

pub mod health;
pub mod playground;

pub use tollgate_core::clock;
pub use tollgate_platform::{
    announced_cache, announcements, audit, client_ip, events, mail, metrics, rate_limit, telemetry,
};
