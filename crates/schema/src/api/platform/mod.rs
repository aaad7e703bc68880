//! Platform fields in GraphQL: the client configuration.

pub mod client_config;
