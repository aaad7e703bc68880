//! Upstream LLM providers the gateway calls with the platform's own
//! credentials, and where each catalog model is routed.
//!
//! A provider's API key is stored only encrypted (see
//! `tollgate_platform::secrets`) and leaves this module only as the
//! [`Upstream`] of a call, never in a row, a log or an error.

pub mod model;
pub mod routes;
pub mod upstream;

pub use model::{ProviderKind, ProviderRow};
pub use routes::RouteRow;
pub use upstream::{Upstream, upstreams_for};
