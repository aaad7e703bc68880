//! People and their accounts: users, registration, sign-in, sessions,
//! email tokens, recovery, profiles, avatars and device login.

pub mod avatars;
pub mod device;
pub mod email;
pub mod email_tokens;
pub mod emails;
pub mod lockout;
pub mod login;
pub mod model;
pub mod pages;
pub mod password_policy;
pub mod profile;
pub mod recovery;
pub mod registration;
pub mod service;
pub mod sessions;
pub mod throttle;
