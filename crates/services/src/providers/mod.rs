//! Upstream LLM providers the gateway calls with the platform's own
//! credentials, and where each catalog model is routed.
//!
//! A provider's API key is stored only encrypted (see
//! `tollgate_platform::secrets`) and leaves this module only as the
//! [`Upstream`] of a call, never in a row, a log or an error.
//!
//! - `model`: provider rows and their queries;
//! - `routes`: where each model goes, replacing a model's routes;
//! - `service`: upsertProvider and deleteProvider, audited;
//! - `seed`: the start-up check of stored keys and the providers the
//!   environment names;
//! - `upstream`: what the gateway needs for one call (kept in memory per
//!   instance with the catalog: `crate::usage::directory`).

pub mod model;
pub mod routes;
pub mod seed;
pub mod service;
pub mod upstream;

pub use model::{ProviderKind, ProviderRow};
pub use routes::RouteRow;
pub use upstream::{Upstream, upstreams_for};
