//! The domains as plain services: plain values in, domain types out, no
//! GraphQL. Modules are listed lowest first; each uses only those above it
//! in this list (checked by `tests/it/layers.rs`, which refuses import
//! cycles between them):
//!
//! - `plans`: plans, subscriptions and their periods, the Stripe client;
//! - `orgs`: organizations, memberships, invitations, the access rules;
//! - `keys`: creating and revoking API keys;
//! - `accounts`: registration, sign-in, recovery, profiles, device login;
//! - `providers`: the gateway's upstream LLM services and model routes;
//! - `usage`: the model catalog, recording, counters, quotas, live usage,
//!   and the gateway's reservations;
//! - `billing`: paying for plans through Stripe (checkout, portal,
//!   webhooks, the lapse job), which moves usage counters between periods;
//! - `admin`: the staff tools over all of them.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod keys;
pub mod orgs;
pub mod plans;
pub mod providers;
pub mod usage;
