//! Who may read or change what inside an organization.
//!
//! The rules live in one table, [`RULES`], keyed by the contract's
//! `Type.field` names. Resolvers look their rule up by name, and the
//! tenant-isolation test walks every organization-scoped field of the
//! contract, so a field without a rule fails the test (and fails closed at
//! run time: an unknown name is an internal error, never access).

use uuid::Uuid;

use crate::orgs::{model as orgs, model::MembershipRow};
use tollgate_auth::{
    AppState, KeyIdentity, Principal,
    keys::scope::{ApiKeyScope, ScopeSet},
    roles::OrgRole,
    users,
    users::{Role, StaffStanding},
};
use tollgate_core::error::{AppError, AppResult};

/// Who may use a field or mutation of one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// What names the organization (id, name, slug): members, staff, and
    /// any key of the organization whatever its scopes.
    Identity,
    /// Members of any role; platform staff read; keys with ORG_READ.
    Read,
    /// Usage data: members of any role; platform staff read; keys with
    /// USAGE_READ.
    ReadUsage,
    /// OWNER and ADMIN; platform staff read.
    ReadManaged,
    /// Members with at least this role. Staff who are not such members are
    /// refused: staff tools are separate mutations.
    Act(OrgRole),
    /// Usage reports and authorizations: MEMBER and above; keys with
    /// USAGE_WRITE.
    WriteUsage,
    /// A platform ADMIN (staff tools that act on an organization).
    PlatformAdmin,
    /// Platform staff, ADMIN or SUPPORT, whatever their membership (staff
    /// tools that read across organizations).
    Staff,
}

/// Every organization-scoped field and mutation of the contract with its
/// rule. Fields of `Organization` are checked against the caller's access,
/// which was established when the organization was loaded.
pub const RULES: &[(&str, Rule)] = &[
    // Finding an organization at all.
    ("Query.organization", Rule::Read),
    // The organization's own fields.
    ("Organization.id", Rule::Identity),
    ("Organization.name", Rule::Identity),
    ("Organization.slug", Rule::Identity),
    ("Organization.personal", Rule::Identity),
    ("Organization.createdAt", Rule::Identity),
    ("Organization.owner", Rule::Read),
    ("Organization.viewerRole", Rule::Identity),
    ("Organization.members", Rule::Read),
    ("Organization.invitations", Rule::ReadManaged),
    ("Organization.subscription", Rule::Read),
    ("Organization.plan", Rule::Read),
    ("Organization.quota", Rule::ReadUsage),
    ("Organization.usage", Rule::ReadUsage),
    ("Organization.usageEvents", Rule::ReadUsage),
    ("Organization.apiKeys", Rule::Read),
    ("Organization.auditLog", Rule::ReadManaged),
    ("Organization.settings", Rule::Read),
    // Queries and subscriptions naming an organization.
    ("Query.authorizeUsage", Rule::WriteUsage),
    ("Query.auditLog", Rule::Staff),
    ("Subscription.usageUpdated", Rule::ReadUsage),
    // Mutations on an organization.
    ("Mutation.updateOrganization", Rule::Act(OrgRole::Admin)),
    ("Mutation.deleteOrganization", Rule::Act(OrgRole::Owner)),
    ("Mutation.inviteMember", Rule::Act(OrgRole::Admin)),
    ("Mutation.revokeInvitation", Rule::Act(OrgRole::Admin)),
    ("Mutation.updateMember", Rule::Act(OrgRole::Admin)),
    ("Mutation.removeMember", Rule::Act(OrgRole::Admin)),
    ("Mutation.leaveOrganization", Rule::Act(OrgRole::Viewer)),
    ("Mutation.transferOwnership", Rule::Act(OrgRole::Owner)),
    ("Mutation.createApiKey", Rule::Act(OrgRole::Member)),
    ("Mutation.revokeApiKey", Rule::Act(OrgRole::Member)),
    ("Mutation.recordUsage", Rule::WriteUsage),
    ("Mutation.recordUsageBatch", Rule::WriteUsage),
    ("Mutation.startCheckout", Rule::Act(OrgRole::Admin)),
    ("Mutation.openBillingPortal", Rule::Act(OrgRole::Admin)),
    ("Mutation.cancelSubscription", Rule::Act(OrgRole::Admin)),
    ("Mutation.setOrganizationPlan", Rule::PlatformAdmin),
    ("Mutation.resetUsage", Rule::PlatformAdmin),
];

/// The rule of a `Type.field` name, if the table has one.
pub fn rule_of(field: &str) -> Option<Rule> {
    RULES.iter().find(|(name, _)| *name == field).map(|(_, rule)| *rule)
}

/// What an API key caller is to one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// The caller is a person, not a key.
    NotAKey,
    /// A key of this organization, with these scopes.
    Own(ScopeSet),
    /// A key of another organization: FORBIDDEN for everything here, the
    /// same whether this organization exists or not.
    Foreign,
}

/// What the caller is to one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The organization.
    pub organization_id: Uuid,
    /// The caller's role there, when they are a member.
    pub role: Option<OrgRole>,
    /// The caller's platform role, when they are staff with its powers.
    pub staff: Option<Role>,
    /// The caller's platform role, when they are staff whose powers wait
    /// until they turn TOTP on (REQUIRE_MFA_FOR_STAFF): refusals that
    /// those powers would lift say to enroll.
    pub staff_awaiting_mfa: Option<Role>,
    /// Whether (and how) an API key is the caller.
    pub key: KeyAccess,
}

impl Access {
    /// Whether the caller may see that the organization exists. Any key of
    /// the organization may (an editor's "check my key" shows its name).
    pub fn can_see(&self) -> bool {
        self.role.is_some() || self.staff.is_some() || matches!(self.key, KeyAccess::Own(_))
    }

    /// Applies the rule of `field`. A caller who may not see the
    /// organization gets NOT_FOUND whether or not it exists; one who may
    /// see it but lacks the role gets FORBIDDEN, and staff whose powers
    /// would allow it but wait for TOTP get FORBIDDEN saying to enroll.
    pub fn require(&self, field: &str) -> AppResult<()> {
        let Err(refused) = self.check(field) else {
            return Ok(());
        };
        if let Some(role) = self.staff_awaiting_mfa {
            let with_powers = Self {
                staff: Some(role),
                staff_awaiting_mfa: None,
                ..*self
            };
            if with_powers.check(field).is_ok() {
                return Err(users::enroll_totp_first());
            }
        }
        Err(refused)
    }

    fn check(&self, field: &str) -> AppResult<()> {
        let rule = rule_of(field).ok_or_else(|| AppError::internal(anyhow::anyhow!("no access rule for {field}")))?;
        match self.key {
            KeyAccess::NotAKey => {}
            KeyAccess::Own(scopes) => return require_key_scope(scopes, rule),
            KeyAccess::Foreign => return Err(AppError::forbidden()),
        }
        // Staff tools answer FORBIDDEN to everyone else, before visibility:
        // they do not depend on the organization, so they reveal nothing.
        match rule {
            Rule::PlatformAdmin if self.staff == Some(Role::Admin) => return Ok(()),
            Rule::Staff if self.staff.is_some() => return Ok(()),
            Rule::PlatformAdmin | Rule::Staff => return Err(AppError::forbidden()),
            _ => {}
        }
        if !self.can_see() {
            return Err(AppError::not_found("organization"));
        }
        let allowed = match rule {
            Rule::Identity | Rule::Read | Rule::ReadUsage => true,
            Rule::ReadManaged => self.staff.is_some() || self.has_role(OrgRole::Admin),
            Rule::Act(min) => self.has_role(min),
            Rule::WriteUsage => self.has_role(OrgRole::Member),
            Rule::PlatformAdmin | Rule::Staff => false,
        };
        if allowed { Ok(()) } else { Err(AppError::forbidden()) }
    }

    /// Whether the caller is a member with at least `min`.
    pub fn has_role(&self, min: OrgRole) -> bool {
        self.role.is_some_and(|role| role.at_least(min))
    }
}

/// A key's rule: identity always, reads and usage by scope, nothing else
/// (the contract's "What an API key may do").
fn require_key_scope(scopes: ScopeSet, rule: Rule) -> AppResult<()> {
    let needed = match rule {
        Rule::Identity => return Ok(()),
        Rule::Read => ApiKeyScope::OrgRead,
        Rule::ReadUsage => ApiKeyScope::UsageRead,
        Rule::WriteUsage => ApiKeyScope::UsageWrite,
        Rule::ReadManaged | Rule::Act(_) | Rule::PlatformAdmin | Rule::Staff => return Err(AppError::forbidden()),
    };
    if scopes.contains(needed) {
        Ok(())
    } else {
        Err(AppError::forbidden())
    }
}

/// Whose memberships decide a caller's access: a person's, looked up by
/// the caller of [`caller`]; a key's access needs no lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in person: their memberships and platform role decide.
    User(Uuid),
    /// An API key: its access, decided already.
    Key(Access),
}

/// Who asks about `organization_id`. Anonymous callers are
/// UNAUTHENTICATED.
pub fn caller(principal: &Principal, organization_id: Uuid) -> AppResult<Caller> {
    match principal {
        Principal::User { user_id, .. } => Ok(Caller::User(*user_id)),
        Principal::Anonymous => Err(AppError::unauthenticated()),
        Principal::ApiKey(key) => Ok(Caller::Key(key_access(key, organization_id))),
    }
}

/// A person's access to `organization_id`, from their memberships (of any
/// organizations) and what they are as platform staff.
pub fn member_access(organization_id: Uuid, memberships: &[MembershipRow], staff: StaffStanding) -> Access {
    let role = memberships
        .iter()
        .find(|m| m.organization_id == organization_id)
        .map(|m| m.role);
    Access {
        organization_id,
        role,
        staff: staff.role(),
        staff_awaiting_mfa: match staff {
            StaffStanding::NeedsMfa(role) => Some(role),
            StaffStanding::Staff(_) | StaffStanding::NotStaff => None,
        },
        key: KeyAccess::NotAKey,
    }
}

/// The caller's access to `organization_id`, read from the database.
/// Anonymous callers are UNAUTHENTICATED.
pub async fn access_to(app: &AppState, principal: &Principal, organization_id: Uuid) -> AppResult<Access> {
    let user_id = match caller(principal, organization_id)? {
        Caller::User(user_id) => user_id,
        Caller::Key(access) => return Ok(access),
    };
    let mut conn = app.db().await?;
    let memberships = orgs::memberships_of_users(&mut conn, &[user_id]).await?;
    let staff = users::find_by_ids(&mut conn, &[user_id])
        .await?
        .into_iter()
        .next()
        .map_or(StaffStanding::NotStaff, |user| user.staff_standing(app.config()));
    Ok(member_access(organization_id, &memberships, staff))
}

fn key_access(key: &KeyIdentity, organization_id: Uuid) -> Access {
    let key = if key.organization_id == organization_id {
        KeyAccess::Own(key.scopes)
    } else {
        KeyAccess::Foreign
    };
    Access {
        organization_id,
        role: None,
        staff: None,
        staff_awaiting_mfa: None,
        key,
    }
}

/// The caller's access to `organization_id`, refused unless `field`'s rule
/// allows it.
pub async fn authorize(app: &AppState, principal: &Principal, organization_id: Uuid, field: &str) -> AppResult<Access> {
    let access = access_to(app, principal, organization_id).await?;
    access.require(field)?;
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(role: Option<OrgRole>, staff: Option<Role>) -> Access {
        Access {
            organization_id: Uuid::nil(),
            role,
            staff,
            staff_awaiting_mfa: None,
            key: KeyAccess::NotAKey,
        }
    }

    fn code(result: AppResult<()>) -> &'static str {
        match result {
            Ok(()) => "OK",
            Err(error) => error.code().as_str(),
        }
    }

    #[test]
    fn outsiders_get_not_found_and_members_without_the_role_forbidden() {
        let outsider = access(None, None);
        let viewer = access(Some(OrgRole::Viewer), None);
        let admin = access(Some(OrgRole::Admin), None);
        let support = access(None, Some(Role::Support));
        assert_eq!(code(outsider.require("Organization.name")), "NOT_FOUND");
        assert_eq!(code(outsider.require("Mutation.inviteMember")), "NOT_FOUND");
        assert_eq!(code(viewer.require("Organization.name")), "OK");
        assert_eq!(code(viewer.require("Organization.invitations")), "FORBIDDEN");
        assert_eq!(code(viewer.require("Mutation.inviteMember")), "FORBIDDEN");
        assert_eq!(code(admin.require("Mutation.inviteMember")), "OK");
        assert_eq!(code(admin.require("Mutation.deleteOrganization")), "FORBIDDEN");
        assert_eq!(code(support.require("Organization.auditLog")), "OK");
        assert_eq!(code(support.require("Mutation.updateOrganization")), "FORBIDDEN");
        assert_eq!(code(support.require("Mutation.setOrganizationPlan")), "FORBIDDEN");
        assert_eq!(
            code(access(None, Some(Role::Admin)).require("Mutation.resetUsage")),
            "OK"
        );
    }

    #[test]
    fn keys_reach_their_own_organization_by_scope_only() {
        let key = |scopes: &[ApiKeyScope]| Access {
            organization_id: Uuid::nil(),
            role: None,
            staff: None,
            staff_awaiting_mfa: None,
            key: KeyAccess::Own(scopes.iter().copied().collect()),
        };
        let writer = key(&[ApiKeyScope::UsageWrite]);
        assert_eq!(code(writer.require("Organization.name")), "OK");
        assert_eq!(code(writer.require("Organization.members")), "FORBIDDEN");
        assert_eq!(code(writer.require("Organization.quota")), "FORBIDDEN");
        assert_eq!(code(writer.require("Mutation.recordUsage")), "OK");
        let reader = key(&[ApiKeyScope::UsageRead, ApiKeyScope::OrgRead]);
        assert_eq!(code(reader.require("Organization.quota")), "OK");
        assert_eq!(code(reader.require("Organization.members")), "OK");
        assert_eq!(code(reader.require("Organization.invitations")), "FORBIDDEN");
        assert_eq!(code(reader.require("Mutation.recordUsage")), "FORBIDDEN");
        assert_eq!(code(reader.require("Mutation.createApiKey")), "FORBIDDEN");
        let foreign = Access {
            key: KeyAccess::Foreign,
            ..writer
        };
        assert_eq!(code(foreign.require("Mutation.recordUsage")), "FORBIDDEN");
        assert_eq!(code(foreign.require("Organization.name")), "FORBIDDEN");
    }

    #[test]
    fn every_staff_member_reads_the_platform_audit_log_and_nobody_else() {
        for (caller, expected) in [
            (access(None, Some(Role::Support)), "OK"),
            (access(None, Some(Role::Admin)), "OK"),
            (access(Some(OrgRole::Owner), None), "FORBIDDEN"),
            (access(None, None), "FORBIDDEN"),
        ] {
            assert_eq!(code(caller.require("Query.auditLog")), expected, "{caller:?}");
        }
    }

    #[test]
    fn staff_awaiting_totp_are_told_to_enroll_where_their_powers_would_help() {
        let waiting = |role: Role| Access {
            staff_awaiting_mfa: Some(role),
            ..access(None, None)
        };
        let refused = waiting(Role::Support).require("Query.auditLog").unwrap_err();
        assert_eq!(refused.code().as_str(), "FORBIDDEN");
        assert_eq!(refused.client_message(), users::ENROLL_TOTP_FIRST);
        // Reading an organization they are not in is a staff power too.
        let refused = waiting(Role::Admin).require("Organization.members").unwrap_err();
        assert_eq!(refused.client_message(), users::ENROLL_TOTP_FIRST);
        // Where staff powers would not help either, the usual answer.
        let refused = waiting(Role::Support).require("Mutation.resetUsage").unwrap_err();
        assert_ne!(refused.client_message(), users::ENROLL_TOTP_FIRST);
        // Membership still works as it does for anyone.
        let member = Access {
            role: Some(OrgRole::Owner),
            ..waiting(Role::Admin)
        };
        assert_eq!(code(member.require("Mutation.updateOrganization")), "OK");
    }

    #[test]
    fn a_field_without_a_rule_is_refused() {
        assert_eq!(
            code(access(Some(OrgRole::Owner), None).require("Organization.secret")),
            "INTERNAL"
        );
    }
}
