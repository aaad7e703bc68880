//! Platform administration and the audit trail. (Staff queries and
//! mutations arrive with the organizations issue.)

pub mod audit;
