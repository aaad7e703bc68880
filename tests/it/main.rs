//! The integration tests: one binary, a fresh database per test, real
//! servers on port 0 spoken to over HTTP and websockets.

mod harness;

mod catalog;
mod cli;
mod contract;
mod graphql_http;
mod websocket;
