//! Cross-cutting services: the clock, client addresses, health checks,
//! metrics, the playground, the event bus, announcements (and the caches
//! they keep honest), rate limiter, mail outbox and the client
//! configuration query.

pub mod announced_cache;
pub mod announcements;
pub mod client_ip;
pub mod events;
pub mod health;
pub mod mail;
pub mod metrics;
pub mod playground;
pub mod rate_limit;
pub mod telemetry;

pub use tollgate_core::clock;
