//! The GraphQL API of every domain: object types, inputs, and the query,
//! mutation and subscription roots merged in [`crate`].
//!
//! One module for all domains, because their object types reference each
//! other (a `User`'s memberships lead to an `Organization`, whose members
//! lead back to users): the cycle stays inside it. The domain folders
//! (`tollgate_services::accounts`, `tollgate_services::orgs`, ...) hold plain services that know
//! nothing of GraphQL.

pub mod accounts;
pub mod admin;
pub mod billing;
pub mod connection;
pub mod enums;
pub mod keys;
pub mod orgs;
pub mod platform;
pub mod providers;
pub mod usage;
