//! Who reports usage for which organization: the key's, or the one a
//! user's token names.

use uuid::Uuid;

use super::check::UsageReport;
use tollgate_auth::Principal;
use tollgate_core::error::{AppError, AppResult};

/// Who usage is recorded for: the organization, the key it was reported
/// with, and the member it counts against (the reporting user, or the
/// key's creator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reporter {
    /// The organization.
    pub organization_id: Uuid,
    /// The key, when an API key reported it.
    pub api_key_id: Option<Uuid>,
    /// The member it counts against.
    pub user_id: Uuid,
}

/// Who reports for which organization, before the access rule is applied
/// (the caller applies it to `organization_id` next: the GraphQL layer
/// through its loaders, anyone else with `orgs::access::authorize`).
/// With an API key the organization is the key's (an id that does not
/// parse is FORBIDDEN); with a user's token `organization_id` is required.
pub fn reporter_unchecked(principal: &Principal, organization_id: Option<&str>) -> AppResult<Reporter> {
    if let Some(key) = principal.api_key() {
        let organization_id = match organization_id {
            None => key.organization_id,
            Some(id) => Uuid::parse_str(id).map_err(|_| AppError::forbidden())?,
        };
        return Ok(Reporter {
            organization_id,
            api_key_id: Some(key.key_id),
            user_id: key.created_by,
        });
    }
    let user_id = principal.require_user()?;
    let id = organization_id
        .ok_or_else(|| AppError::bad_input("organizationId", "organizationId is required with a user's token"))?;
    let organization_id = Uuid::parse_str(id).map_err(|_| AppError::not_found("organization"))?;
    Ok(Reporter {
        organization_id,
        api_key_id: None,
        user_id,
    })
}

/// The organizationId a batch is for, checked input by input: with a key,
/// none or the key's own (FORBIDDEN otherwise); with a user's token, given
/// on every input and the same on all (BAD_USER_INPUT otherwise).
pub fn batch_organization(principal: &Principal, inputs: &[UsageReport]) -> AppResult<Option<String>> {
    if let Some(key) = principal.api_key() {
        for (index, input) in inputs.iter().enumerate() {
            let Some(id) = &input.organization_id else { continue };
            if Uuid::parse_str(id.as_str()).ok() != Some(key.organization_id) {
                return Err(AppError::forbidden().at_index(index));
            }
        }
        return Ok(None);
    }
    principal.require_user()?;
    let mut first: Option<Uuid> = None;
    for (index, input) in inputs.iter().enumerate() {
        let id = input.organization_id.as_ref().ok_or_else(|| {
            AppError::bad_input("organizationId", "organizationId is required with a user's token").at_index(index)
        })?;
        let id = Uuid::parse_str(id.as_str()).map_err(|_| AppError::not_found("organization").at_index(index))?;
        match first {
            None => first = Some(id),
            Some(first) if first != id => {
                return Err(
                    AppError::bad_input("organizationId", "all inputs must be of one organization").at_index(index),
                );
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|id| id.to_string()))
}
