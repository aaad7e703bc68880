//! Tollgate: a GraphQL server for user management and LLM token metering.
//!
//! `build_app(config)` assembles the whole server; `main.rs` and the
//! integration tests both go through it.

pub mod app;
pub mod routes;

/// The platform layer, with the clock from core, under one name.
pub mod platform {
    pub use tollgate_core::clock;
    pub use tollgate_platform::*;
}

pub use tollgate_core::config;

pub use tollgate_auth as auth;
pub use tollgate_core::error;
pub use tollgate_db as db;
pub use tollgate_gateway as gateway;
pub use tollgate_schema as graphql;
pub use tollgate_services::{accounts, admin, billing, keys, orgs, plans, providers, usage};

pub use app::{App, AppState, build_app, build_app_with_clock};
pub use config::Config;
