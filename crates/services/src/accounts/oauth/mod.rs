//! Sign-in with identity providers: GitHub (OAuth 2), Google and any
//! OpenID Connect issuer (discovery, ID token checked against the issuer's
//! JWKS: signature, `iss`, `aud`, `exp`, `nonce`), with `state` and PKCE
//! (S256) on every flow.
//!
//! The flow, as a browser lives it:
//!
//! 1. [`flow::start`] (`startOAuthLogin`) checks the caller's `redirectUri`
//!    against the app's own origins, keeps the state (as SHA-256), nonce
//!    and PKCE verifier (encrypted) server-side for 10 minutes, and answers
//!    the provider's authorization URL.
//! 2. The provider sends the browser to `GET /oauth/callback`
//!    ([`callback::callback`]), which spends the flow (single use),
//!    exchanges the code, resolves the account ([`linking`]) and redirects
//!    to the `redirectUri` with a one-time `?code=` (or `?error=` for a
//!    known flow that failed). An unknown, forged or used state has no
//!    trustworthy redirect target: a 400 page, never a code.
//! 3. [`complete::complete`] (`completeOAuthLogin`) trades that code (60
//!    seconds, single use) for a session, or MFA_REQUIRED with TOTP on.
//!
//! No provider token is stored or logged: the access token is used once to
//! read who the person is, then dropped.

pub mod callback;
pub mod complete;
pub mod flow;
pub mod github;
pub mod identities;
pub mod linking;
pub mod oidc;
pub mod providers;

/// The path providers return to (`PUBLIC_URL/oauth/callback`).
pub const CALLBACK_PATH: &str = "oauth/callback";
