//! The integration tests: one binary, a fresh database per test, real
//! servers on port 0 spoken to over HTTP and websockets.

mod harness;

mod accounts;
mod admin;
mod announcements;
mod api_keys;
mod audit;
mod billing;
mod browser;
mod catalog;
mod cli;
mod clients;
mod contract;
mod device;
mod events;
mod example_client;
mod field_errors;
mod fuzz;
mod gateway;
mod graphql_http;
mod input;
mod invitations;
mod layers;
mod live_usage;
mod llm_fake;
mod llm_sdks;
mod load;
mod lockout;
mod mail;
mod metrics;
mod organizations;
mod persisted_queries;
mod playground;
mod profile;
mod providers;
mod query_limits;
mod quota;
mod rate_limit;
mod recovery;
mod reservations;
mod tenancy;
mod usage;
mod usage_batch;
mod websocket;
