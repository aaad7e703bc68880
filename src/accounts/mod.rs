//! People and their accounts: users, registration, sign-in, sessions,
//! email tokens and (still to come) profiles and device login.

pub mod email;
pub mod email_tokens;
pub mod emails;
pub mod graphql;
pub mod lockout;
pub mod login;
pub mod model;
pub mod mutations;
pub mod password_policy;
pub mod registration;
pub mod service;
pub mod sessions;
pub mod throttle;
