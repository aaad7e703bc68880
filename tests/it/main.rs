//! The integration tests: one binary, a fresh database per test, real
//! servers on port 0 spoken to over HTTP and websockets.

mod harness;

mod accounts;
mod catalog;
mod cli;
mod contract;
mod device;
mod events;
mod graphql_http;
mod lockout;
mod mail;
mod profile;
mod rate_limit;
mod recovery;
mod websocket;
