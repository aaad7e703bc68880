//! Organizations (tenants): memberships and roles, invitations, and the
//! access rules every organization-scoped field goes through.

pub mod access;
pub mod graphql;
pub mod invitations;
pub mod model;
