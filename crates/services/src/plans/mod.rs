//! Plans and subscriptions: which plan an organization is on, its billing
//! periods, and the Stripe client that changes them. The domains below
//! billing (organizations, keys, usage) read plans through here; paying for
//! them (checkout, webhooks, lapses) is `billing`'s, above usage.

pub mod deletion;
pub mod model;
pub mod stripe_api;
pub mod subscription;
