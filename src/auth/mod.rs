//! Credentials: password hashing, access tokens, and the `Principal` a
//! request acts as.

pub mod access_token;
pub mod password;
pub mod principal;

pub use access_token::{AccessClaims, AccessTokens};
pub use password::PasswordHasher;
pub use principal::Principal;
