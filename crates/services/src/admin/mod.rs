//! Platform administration and the audit trail: the staff queries and
//! mutations, system statistics, and the audit log's writer and readers.

pub use tollgate_platform::audit;
pub mod search;
pub mod stats;
pub mod users;
pub use tollgate_auth::role_events as events;
