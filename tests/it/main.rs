//! The integration tests: one binary, a fresh database per test, real
//! servers on port 0 spoken to over HTTP and websockets.

mod harness;

mod accounts;
mod admin;
mod api_keys;
mod audit;
mod billing;
mod browser;
mod catalog;
mod cli;
mod contract;
mod device;
mod events;
mod example_client;
mod fuzz;
mod graphql_http;
mod input;
mod invitations;
mod live_usage;
mod lockout;
mod mail;
mod metrics;
mod organizations;
mod playground;
mod profile;
mod quota;
mod rate_limit;
mod recovery;
mod tenancy;
mod usage;
mod usage_batch;
mod websocket;
