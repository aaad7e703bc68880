//! Organizations (tenants) and memberships. Registration creates the
//! personal organization; the organizations issue adds the rest.

pub mod model;
