//! Cross-cutting services every domain uses and none owns: the event bus,
//! announcements (and the caches they keep honest), the mail outbox, rate
//! limits, metrics, the audit writer, client addresses, logging, and the
//! [`Platform`] state that holds them.

pub mod announced_cache;
pub mod announcements;
pub mod audit;
pub mod client_ip;
pub mod events;
pub mod mail;
pub mod metrics;
pub mod rate_limit;
pub mod secrets;
pub mod state;
pub mod telemetry;

pub use state::{Platform, PlatformParts};
