//! The model catalog and (with the usage issue) API keys, usage events,
//! quotas and live updates.

pub mod graphql;
pub mod model;
