//! What an API key may do.

use crate::text_enum;

text_enum! {
    /// What an API key may do.
    pub enum ApiKeyScope {
        /// authorizeUsage and recordUsage(Batch).
        UsageWrite => "USAGE_WRITE",
        /// The organization's quota, usage, usageEvents and usageUpdated.
        UsageRead => "USAGE_READ",
        /// The organization's other fields.
        OrgRead => "ORG_READ",
    }
}

/// A set of scopes, small enough to copy around with an access decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeSet(u8);

impl ScopeSet {
    fn bit(scope: ApiKeyScope) -> u8 {
        match scope {
            ApiKeyScope::UsageWrite => 1,
            ApiKeyScope::UsageRead => 2,
            ApiKeyScope::OrgRead => 4,
        }
    }

    /// Whether the set holds `scope`.
    pub fn contains(self, scope: ApiKeyScope) -> bool {
        self.0 & Self::bit(scope) != 0
    }
}

impl FromIterator<ApiKeyScope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = ApiKeyScope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, scope| bits | Self::bit(scope)))
    }
}
