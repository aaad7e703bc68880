//! Accounts in GraphQL: users, sessions, sign-in, profiles and device login.

pub mod device;
pub mod mutation;
pub mod profile;
pub mod query;
