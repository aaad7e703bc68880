//! Credentials: password hashing, access and refresh tokens, the session
//! cache, and the `Principal` a request acts as.

pub mod access_token;
pub mod password;
pub mod principal;
pub mod refresh_token;
pub mod session_cache;

pub use access_token::{AccessClaims, AccessTokens};
pub use password::PasswordHasher;
pub use principal::{KeyIdentity, Principal};
pub use refresh_token::RefreshTokens;
