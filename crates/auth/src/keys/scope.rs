//! What an API key may do.

use crate::roles::OrgRole;
use tollgate_db::text_enum;

text_enum! {
    /// What an API key may do.
    pub enum ApiKeyScope {
        /// authorizeUsage and recordUsage(Batch).
        UsageWrite => "USAGE_WRITE",
        /// The organization's quota, usage, usageEvents and usageUpdated.
        UsageRead => "USAGE_READ",
        /// The organization's other fields.
        OrgRead => "ORG_READ",
        /// LLM calls through the gateway (/v1), each metered.
        Llm => "LLM",
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
            ApiKeyScope::Llm => 8,
        }
    }

    /// Whether the set holds `scope`.
    pub fn contains(self, scope: ApiKeyScope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    /// What is left of the set while the key's creator holds `role`: a
    /// key never does more than its creator may now (a VIEWER reads, but
    /// reports, authorizes and spends no usage).
    pub fn within_role_of_creator(self, role: OrgRole) -> Self {
        if role.at_least(OrgRole::Member) {
            return self;
        }
        Self(self.0 & !Self::bit(ApiKeyScope::UsageWrite) & !Self::bit(ApiKeyScope::Llm))
    }
}

impl FromIterator<ApiKeyScope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = ApiKeyScope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, scope| bits | Self::bit(scope)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewers_keys_lose_usage_write_and_llm_only() {
        let all: ScopeSet = [
            ApiKeyScope::UsageWrite,
            ApiKeyScope::UsageRead,
            ApiKeyScope::OrgRead,
            ApiKeyScope::Llm,
        ]
        .into_iter()
        .collect();
        let viewer = all.within_role_of_creator(OrgRole::Viewer);
        assert!(!viewer.contains(ApiKeyScope::UsageWrite));
        assert!(!viewer.contains(ApiKeyScope::Llm));
        assert!(viewer.contains(ApiKeyScope::UsageRead) && viewer.contains(ApiKeyScope::OrgRead));
        for role in [OrgRole::Member, OrgRole::Admin, OrgRole::Owner] {
            assert_eq!(all.within_role_of_creator(role), all);
        }
    }
}
