//! People and their accounts: users, profiles, and (with the accounts
//! issue) registration, sessions and device login.

pub mod email;
pub mod graphql;
pub mod model;
pub mod service;
