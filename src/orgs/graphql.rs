//! The Organization, Membership and Invitation types and the organization
//! query. Every field goes through the rules of [`crate::orgs::access`].

use async_graphql::{Context, ID, Object};
use uuid::Uuid;

use crate::{
    accounts::graphql::User,
    error::{AppError, AppResult},
    graphql::{
        context::ContextExt,
        scalars::{BigInt, Timestamp},
    },
    orgs::{
        access::{self, Access},
        invitations::InvitationRow,
        model::{self as orgs, MembershipRow, OrgRole, OrganizationRow},
    },
};

/// A tenant: people with roles, keys, usage and a plan.
pub struct Organization {
    row: OrganizationRow,
    access: Access,
}

impl Organization {
    /// Organization `id` as the caller may see it; None when they may not
    /// (whether or not it exists).
    pub async fn load(ctx: &Context<'_>, id: Uuid) -> AppResult<Option<Self>> {
        let access = access::access_to(ctx, id).await?;
        if !access.can_see() {
            return Ok(None);
        }
        let row = ctx.loaders()?.organizations.load_one(id).await?;
        Ok(row.map(|row| Self { row, access }))
    }

    /// Like [`Organization::load`], for non-null fields: NOT_FOUND when
    /// the caller may not see it.
    pub async fn require(ctx: &Context<'_>, id: Uuid) -> AppResult<Self> {
        Self::load(ctx, id)
            .await?
            .ok_or_else(|| AppError::not_found("organization"))
    }

    /// Wraps a row the caller's access to was already established.
    pub fn new(row: OrganizationRow, access: Access) -> Self {
        Self { row, access }
    }

    /// The row behind it.
    pub fn row(&self) -> &OrganizationRow {
        &self.row
    }

    /// What the caller is to this organization.
    pub fn access(&self) -> Access {
        self.access
    }
}

#[Object]
impl Organization {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.row.name
    }

    /// Unique URL-friendly name: 3 to 40 of a-z, 0-9 and '-'.
    async fn slug(&self) -> &str {
        &self.row.slug
    }

    /// Created for each user at registration; cannot be left or deleted.
    async fn personal(&self) -> bool {
        self.row.personal_user_id.is_some()
    }

    /// When it was created.
    async fn created_at(&self) -> Timestamp {
        self.row.created_at.into()
    }

    /// The one member with the OWNER role.
    async fn owner(&self, ctx: &Context<'_>) -> AppResult<User> {
        let loaders = ctx.loaders()?;
        let members = loaders
            .memberships_by_organization
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        let owner_id = members
            .iter()
            .find(|m| m.role == OrgRole::Owner)
            .map(|m| m.user_id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("organization {} has no owner", self.row.id)))?;
        let owner = loaders.users.load_one(owner_id).await?;
        owner
            .map(User::new)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("owner {owner_id} missing")))
    }

    /// The caller's role here; null for platform staff who are not members.
    async fn viewer_role(&self) -> Option<OrgRole> {
        self.access.role
    }

    /// Everyone in the organization, longest-standing first.
    async fn members(&self, ctx: &Context<'_>) -> AppResult<Vec<Membership>> {
        let members = ctx
            .loaders()?
            .memberships_by_organization
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        Ok(members.into_iter().map(Membership).collect())
    }

    /// Pending invitations; OWNER/ADMIN (null with FORBIDDEN for others).
    async fn invitations(&self, ctx: &Context<'_>) -> AppResult<Option<Vec<Invitation>>> {
        self.access.require("Organization.invitations")?;
        let pending = ctx
            .loaders()?
            .pending_invitations
            .load_one(self.row.id)
            .await?
            .unwrap_or_default();
        Ok(Some(pending.into_iter().map(Invitation).collect()))
    }

    /// Free-form settings shared by the organization's clients.
    async fn settings(&self) -> &serde_json::Value {
        &self.row.settings
    }
}

/// One person's place in one organization.
pub struct Membership(pub MembershipRow);

#[Object]
impl Membership {
    /// The organization.
    async fn organization(&self, ctx: &Context<'_>) -> AppResult<Organization> {
        Organization::require(ctx, self.0.organization_id).await
    }

    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> AppResult<User> {
        let user = ctx.loaders()?.users.load_one(self.0.user_id).await?;
        user.map(User::new).ok_or_else(|| AppError::not_found("user"))
    }

    /// Their role here.
    async fn role(&self) -> OrgRole {
        self.0.role
    }

    /// When they joined.
    async fn joined_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// Monthly token budget for this member inside the organization; null = none.
    async fn token_limit(&self) -> Option<BigInt> {
        self.0.token_limit.map(BigInt)
    }
}

/// An emailed offer to join an organization.
pub struct Invitation(pub InvitationRow);

#[Object]
impl Invitation {
    /// Stable identifier (for revokeInvitation).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The invited address.
    async fn email(&self) -> &str {
        &self.0.email
    }

    /// The role the invitee gets on accepting.
    async fn role(&self) -> OrgRole {
        self.0.role
    }

    /// Where the invitation leads.
    async fn organization(&self, ctx: &Context<'_>) -> AppResult<Organization> {
        Organization::require(ctx, self.0.organization_id).await
    }

    /// Who sent it.
    async fn invited_by(&self, ctx: &Context<'_>) -> AppResult<User> {
        let user = ctx.loaders()?.users.load_one(self.0.invited_by).await?;
        user.map(User::new).ok_or_else(|| AppError::not_found("user"))
    }

    /// When it was sent.
    async fn created_at(&self) -> Timestamp {
        self.0.created_at.into()
    }

    /// When the link stops working.
    async fn expires_at(&self) -> Timestamp {
        self.0.expires_at.into()
    }

    /// When it was accepted, if it was.
    async fn accepted_at(&self) -> Option<Timestamp> {
        self.0.accepted_at.map(Timestamp)
    }
}

/// Queries about organizations.
#[derive(Default)]
pub struct OrgsQuery;

#[Object]
impl OrgsQuery {
    /// Members, or ADMIN/SUPPORT. Exactly one of id or slug.
    async fn organization(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> AppResult<Option<Organization>> {
        let id = match (id, slug) {
            (Some(id), None) => match Uuid::parse_str(&id) {
                Ok(id) => id,
                // Not an id of ours: invisible, like any other.
                Err(_) => return Ok(None),
            },
            (None, Some(slug)) => {
                let mut conn = ctx.app()?.db().await?;
                match orgs::find_by_slug(&mut conn, slug.trim()).await? {
                    Some(row) => row.id,
                    None => return Ok(None),
                }
            }
            _ => return Err(AppError::bad_input("id", "give exactly one of id or slug")),
        };
        Organization::load(ctx, id).await
    }
}
