//! Platform administration and the audit trail: the staff queries and
//! mutations, system statistics, and the audit log's writer and readers.

pub mod search;
pub mod stats;
pub mod users;
