//! Everything that turns credentials into a [`Principal`]: password
//! hashing, access and refresh tokens, sessions and their cache, API key
//! secrets, scopes, resolution and their cache, the roles they are checked
//! against, and the announcements that revoke them. It also owns the
//! tables those need (users, sessions, email tokens, API keys), so the
//! domains above read them through it rather than through each other.

pub mod access_token;
pub mod email;
pub mod email_tokens;
pub mod keys;
pub mod membership_events;
pub mod password;
pub mod principal;
pub mod refresh_token;
pub mod role_events;
pub mod roles;
pub mod session_cache;
pub mod sessions;
pub mod state;
pub mod users;

pub use access_token::{AccessClaims, AccessTokens};
pub use password::PasswordHasher;
pub use principal::{KeyIdentity, Principal};
pub use refresh_token::RefreshTokens;
pub use state::{AppState, AuthParts};
