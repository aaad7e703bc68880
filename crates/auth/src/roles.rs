//! Roles inside an organization. The platform-wide role (USER, SUPPORT,
//! ADMIN) lives with the users it belongs to ([`crate::users::Role`]).

use tollgate_db::text_enum;

text_enum! {
    /// Role inside one organization. OWNER > ADMIN > MEMBER > VIEWER.
    pub enum OrgRole {
        /// The one owner: everything, including deletion and transfer.
        Owner => "OWNER",
        /// Manages members, invitations, keys and billing.
        Admin => "ADMIN",
        /// Uses the organization: keys and usage.
        Member => "MEMBER",
        /// Reads.
        Viewer => "VIEWER",
    }
}

impl OrgRole {
    /// Higher is more powerful: OWNER > ADMIN > MEMBER > VIEWER.
    fn rank(self) -> u8 {
        match self {
            Self::Owner => 3,
            Self::Admin => 2,
            Self::Member => 1,
            Self::Viewer => 0,
        }
    }

    /// Whether this role carries every power of `min`.
    pub fn at_least(self, min: OrgRole) -> bool {
        self.rank() >= min.rank()
    }
}
