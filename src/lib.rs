//! Tollgate: a GraphQL server for user management and LLM token metering.
//!
//! `build_app(config)` assembles the whole server; `main.rs` and the
//! integration tests both go through it.

pub mod app;
pub mod graphql;
pub mod platform;

pub use tollgate_core::config;

/// The one error type, and its GraphQL form for resolvers.
pub mod error {
    pub use crate::graphql::error::{ApiError, ApiResult};
    pub use tollgate_core::error::*;
}
pub use tollgate_auth as auth;
pub use tollgate_db as db;
pub use tollgate_services::{accounts, admin, billing, keys, orgs, plans, usage};

pub use app::{App, AppState, build_app, build_app_with_clock};
pub use config::Config;
