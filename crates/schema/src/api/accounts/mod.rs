//! Accounts in GraphQL: users, sessions, sign-in, profiles, device login
//! and two-factor authentication.

pub mod device;
pub mod mfa;
pub mod mutation;
pub mod profile;
pub mod query;
