//! The model catalog and (with the usage issue) API keys, usage events,
//! quotas and live updates.

pub mod authorize;
pub mod catalog;
mod coalesce;
pub mod counters;
pub mod daily;
pub mod directory;
pub mod event;
pub mod live;
pub mod live_message;
pub mod llm_models;
pub mod pricing;
pub mod quota;
pub mod reads;
pub mod record;
pub mod reservations;
pub mod reset;
pub mod segments;
pub mod thresholds;
pub mod windows;
