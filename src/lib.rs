//! Tollgate: a GraphQL server for user management and LLM token metering.
//!
//! `build_app(config)` assembles the whole server; `main.rs` and the
//! integration tests both go through it.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod billing;
pub mod graphql;
pub mod keys;
pub mod orgs;
pub mod platform;
pub mod usage;

pub use tollgate_core::config;

/// The one error type, and its GraphQL form for resolvers.
pub mod error {
    pub use crate::graphql::error::{ApiError, ApiResult};
    pub use tollgate_core::error::*;
}
pub use tollgate_auth as auth;
pub use tollgate_db as db;

pub use app::{App, AppState, build_app, build_app_with_clock};
pub use config::Config;
