//! Organizations (tenants): memberships and roles, invitations, and the
//! access rules every organization-scoped field goes through.

pub mod access;
pub mod invitation_rows;
pub mod invitations;
pub mod membership;
pub mod model;
pub mod service;
pub mod slug;
