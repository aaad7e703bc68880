//! What an API key may call, enforced in one place for every resolver: the
//! contract's "What an API key may do", "anything else is FORBIDDEN".
//! Root fields a key may not use are refused before their resolver runs,
//! and so are fields of its organization its scopes do not reach, so no
//! resolver has to remember that keys exist.
//!
//! The check runs in the one hook around every field
//! ([`crate::field_errors`]): each extension in the schema costs a boxed
//! future per field, whether or not it looks at fields.

use async_graphql::{ServerError, extensions::ResolveInfo};

use crate::request::server_error;
use tollgate_auth::KeyIdentity;
use tollgate_core::error::{AppError, AppResult, ErrorCode};
use tollgate_services::orgs::access::{Access, KeyAccess};

/// Root fields (`Type.field`) an API key may call. Introspection (`__…`)
/// is allowed too.
pub const KEY_ROOT_FIELDS: &[&str] = &[
    "Query.models",
    "Query.plans",
    "Query.clientConfig",
    "Query.apiKeyInfo",
    "Query.authorizeUsage",
    // Its own organization, field by field under the access rules.
    "Query.organization",
    "Mutation.recordUsage",
    "Mutation.recordUsageBatch",
    "Subscription.usageUpdated",
];

/// Whether an API key may call root field `field` of root type
/// `root_type`.
pub fn key_may_call(root_type: &str, field: &str) -> bool {
    field.starts_with("__")
        || KEY_ROOT_FIELDS
            .iter()
            .any(|allowed| is_named(allowed, root_type, field))
}

fn is_named(qualified: &str, root_type: &str, field: &str) -> bool {
    qualified
        .split_once('.')
        .is_some_and(|(ty, name)| ty == root_type && name == field)
}

/// The refusal of a field `key` may not reach, as the field's error (the
/// hook gives it the field's path); None for fields it may use. Called by
/// [`crate::field_errors::FieldErrors`] around every field when the caller
/// is a key, which it finds out once per execution.
pub(crate) fn refusal(key: &KeyIdentity, info: &ResolveInfo<'_>) -> Option<ServerError> {
    check_key_field(key, info).err().map(server_error)
}

/// A key's access to one field: root fields from [`KEY_ROOT_FIELDS`];
/// fields of an organization (always the key's own: another organization
/// is invisible to a key) by the rules table and the key's scopes, so a
/// resolver that only checks membership cannot leak to a key.
fn check_key_field(key: &KeyIdentity, info: &ResolveInfo<'_>) -> AppResult<()> {
    if info.name.starts_with("__") {
        return Ok(());
    }
    if info.path_node.parent.is_none() {
        if key_may_call(info.parent_type, info.name) {
            return Ok(());
        }
        return Err(AppError::client(
            ErrorCode::Forbidden,
            format!("an API key may not use {}.{}", info.parent_type, info.name),
        ));
    }
    if info.parent_type == "Organization" {
        let access = Access {
            organization_id: key.organization_id,
            role: None,
            staff: None,
            staff_awaiting_mfa: None,
            key: KeyAccess::Own(key.scopes),
        };
        return access.require(&format!("Organization.{}", info.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reach_only_the_listed_root_fields() {
        assert!(key_may_call("Query", "models"));
        assert!(key_may_call("Query", "apiKeyInfo"));
        assert!(key_may_call("Mutation", "recordUsage"));
        assert!(key_may_call("Query", "__schema"));
        assert!(!key_may_call("Query", "me"));
        assert!(!key_may_call("Mutation", "createApiKey"));
        assert!(!key_may_call("Mutation", "models"));
    }

    /// Every allowed name is a root field of the exported schema (or a
    /// contract item not built yet), so a renamed field cannot silently
    /// fall out of the list.
    #[test]
    fn every_listed_field_exists() {
        let sdl = crate::export_sdl();
        let gaps =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/contract_gaps.txt")).unwrap();
        for qualified in KEY_ROOT_FIELDS {
            if gaps.lines().any(|line| line.trim() == *qualified) {
                continue;
            }
            let (root, field) = qualified.split_once('.').unwrap();
            let block = sdl
                .split(&format!("type {root} {{"))
                .nth(1)
                .and_then(|rest| rest.split("\n}").next())
                .unwrap_or_else(|| panic!("no type {root}"));
            let declared = block.lines().any(|line| {
                line.trim_start()
                    .strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('('))
            });
            assert!(declared, "{qualified} is not in the schema");
        }
    }
}
