//! Accounts in GraphQL: users, sessions, sign-in, profiles, device login
//! two-factor authentication and identity providers.

pub mod device;
pub mod mfa;
pub mod mutation;
pub mod oauth;
pub mod profile;
pub mod query;
