//! Organizations as a whole: creating, changing and deleting them, and the
//! lock every membership change takes first.
//!
//! Every change to who is in an organization locks the organization's row
//! (`FOR UPDATE`) before it reads anything, so changes to one organization
//! run one after the other: the one-OWNER rule, plan limits and "is the
//! caller still an ADMIN" are checked against the state the change applies
//! to, not against a read that a concurrent change already made stale.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error as DieselError},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::orgs::{
    access::{Rule, rule_of},
    model as orgs,
    model::{MembershipRow, NewOrganization, OrganizationRow},
    slug,
};
use tollgate_auth::{AppState, membership_events::MembershipEnded, users::require_verified};
use tollgate_core::request::RequestMeta;
use tollgate_core::{
    error::{AppError, AppResult, ErrorCode},
    validate::clean_name,
};
use tollgate_db::schema::{memberships, organizations};
use tollgate_platform::{
    announcements,
    audit::{self, AuditEntry},
};

/// The largest settings object accepted, as compact JSON.
pub const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// The unique index on slugs.
const SLUG_KEY: &str = "organizations_slug_key";
/// Tries at a random slug suffix before giving up (each one failing means
/// a 1 in 10^9 collision, so more than one retry is already remarkable).
const SUFFIX_ATTEMPTS: usize = 5;

/// The client address as audit entries keep it.
pub fn audit_ip(meta: &RequestMeta) -> Option<String> {
    Some(meta.client_ip.to_string())
}

/// CONFLICT naming the slug field.
fn slug_taken() -> AppError {
    AppError::Client {
        code: ErrorCode::Conflict,
        message: "this slug is taken".into(),
        field: Some("slug".into()),
        retry_after: None,
    }
}

/// The organization row, locked for the rest of the transaction.
async fn lock(conn: &mut AsyncPgConnection, organization_id: Uuid) -> QueryResult<Option<OrganizationRow>> {
    organizations::table
        .find(organization_id)
        .select(OrganizationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// One membership, if it exists.
pub async fn find_membership(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    user_id: Uuid,
) -> QueryResult<Option<MembershipRow>> {
    memberships::table
        .find((organization_id, user_id))
        .select(MembershipRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Locks the organization and re-checks, against what is now committed,
/// that `user_id` is a member with the role `field`'s rule asks for (the
/// resolver checked it too, but before the lock). NOT_FOUND when the
/// organization is gone or the user is no longer in it; FORBIDDEN when
/// their role no longer suffices.
pub async fn lock_as_member(
    conn: &mut AsyncPgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    field: &str,
) -> AppResult<(OrganizationRow, MembershipRow)> {
    let Some(Rule::Act(min)) = rule_of(field) else {
        return Err(AppError::internal(anyhow::anyhow!("{field} has no member rule")));
    };
    let organization = lock(conn, organization_id)
        .await?
        .ok_or_else(|| AppError::not_found("organization"))?;
    let member = find_membership(conn, organization_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("organization"))?;
    if !member.role.at_least(min) {
        return Err(AppError::forbidden());
    }
    Ok((organization, member))
}

/// Whether this is someone's personal organization.
pub fn is_personal(organization: &OrganizationRow) -> bool {
    organization.personal_user_id.is_some()
}

/// FORBIDDEN for a personal organization, with what was refused.
pub fn refuse_personal(organization: &OrganizationRow, what: &'static str) -> AppResult<()> {
    if is_personal(organization) {
        return Err(AppError::client(
            ErrorCode::Forbidden,
            format!("a personal organization cannot be {what}"),
        ));
    }
    Ok(())
}

/// Validates organization settings: a JSON object of at most
/// [`MAX_SETTINGS_BYTES`] as compact JSON, storable as `jsonb`.
pub fn check_settings(value: Value) -> AppResult<Value> {
    tollgate_core::validate::check_json_object(value, "settings", MAX_SETTINGS_BYTES)
}

/// Inserts a team organization with `slug` inside a savepoint; `None`
/// when the slug is taken (the savepoint keeps the refusal from aborting
/// the caller's transaction, so another slug can be tried).
async fn insert_with_slug(
    conn: &mut AsyncPgConnection,
    name: &str,
    slug: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<OrganizationRow>> {
    let organization = NewOrganization {
        id: Uuid::now_v7(),
        name,
        slug,
        personal_user_id: None,
        created_at: now,
        updated_at: now,
    };
    let inserted = conn
        .transaction::<_, DieselError, _>(async |conn| orgs::insert(conn, &organization).await)
        .await;
    match inserted {
        Ok(row) => Ok(Some(row)),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some(SLUG_KEY) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Inserts an organization whose slug comes from its name: the plain slug
/// when it is free, otherwise one with a short random suffix (people who
/// did not choose a slug should not be refused because of one).
async fn insert_with_derived_slug(
    conn: &mut AsyncPgConnection,
    name: &str,
    now: DateTime<Utc>,
) -> AppResult<OrganizationRow> {
    if let Some(plain) = slug::derive(name)
        && let Some(row) = insert_with_slug(conn, name, &plain, now).await?
    {
        return Ok(row);
    }
    for _ in 0..SUFFIX_ATTEMPTS {
        if let Some(row) = insert_with_slug(conn, name, &slug::derive_with_suffix(name), now).await? {
            return Ok(row);
        }
    }
    Err(AppError::internal(anyhow::anyhow!(
        "no free slug for {name:?} after {SUFFIX_ATTEMPTS} attempts"
    )))
}

/// `createOrganization`: a team organization owned by its creator, on the
/// free plan, in one transaction.
#[tracing::instrument(skip_all)]
pub async fn create(
    app: &AppState,
    creator: Uuid,
    name: &str,
    chosen_slug: Option<&str>,
    meta: &RequestMeta,
) -> AppResult<OrganizationRow> {
    let name = clean_name(name, "name")?;
    // A form's empty slug field means "make one up".
    let chosen = chosen_slug
        .filter(|s| !s.trim().is_empty())
        .map(|s| slug::clean(s, "slug"))
        .transpose()?;
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        require_verified(conn, creator).await?;
        let organization = match &chosen {
            Some(slug) => insert_with_slug(conn, &name, slug, now).await?.ok_or_else(slug_taken)?,
            None => insert_with_derived_slug(conn, &name, now).await?,
        };
        orgs::settle_new(conn, organization.id, creator, now).await?;
        let entry = AuditEntry::new("org.created", Some(creator), ip.clone())
            .target("organization", organization.id)
            .in_organization(organization.id)
            .metadata(json!({ "personal": false, "name": organization.name, "slug": organization.slug }));
        audit::record(conn, entry, now).await?;
        Ok(organization)
    })
    .await
}

/// What `updateOrganization` asked to change; `None` keeps a value.
#[derive(Debug, Default)]
pub struct OrganizationUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// Replaces the whole settings object.
    pub settings: Option<Value>,
}

/// The columns `updateOrganization` may set; `None` leaves a column alone.
#[derive(AsChangeset)]
#[diesel(table_name = organizations)]
struct OrganizationChangeset<'a> {
    name: Option<&'a str>,
    slug: Option<&'a str>,
    settings: Option<&'a Value>,
    updated_at: DateTime<Utc>,
}

/// The slug to change to: `None` when `raw` is the current slug (clients
/// echo whole forms back). A personal organization keeps its slug: it is
/// what marks it as personal.
fn slug_change(organization: &OrganizationRow, raw: Option<&str>) -> AppResult<Option<String>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.trim().eq_ignore_ascii_case(&organization.slug) {
        return Ok(None);
    }
    refuse_personal(organization, "given another slug")?;
    slug::clean(raw, "slug").map(Some)
}

/// `updateOrganization`: name, slug and settings (ADMIN and above).
#[tracing::instrument(skip_all)]
pub async fn update(
    app: &AppState,
    actor: Uuid,
    organization_id: Uuid,
    update: OrganizationUpdate,
    meta: &RequestMeta,
) -> AppResult<OrganizationRow> {
    let name = update.name.as_deref().map(|n| clean_name(n, "name")).transpose()?;
    let settings = update.settings.map(check_settings).transpose()?;
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let (current, _) = lock_as_member(conn, organization_id, actor, "Mutation.updateOrganization").await?;
        let new_slug = slug_change(&current, update.slug.as_deref())?;
        let new_name = name.as_deref().filter(|n| *n != current.name);
        let new_settings = settings.as_ref().filter(|s| **s != current.settings);
        let mut changed = Vec::new();
        for (field, is_changed) in [
            ("name", new_name.is_some()),
            ("slug", new_slug.is_some()),
            ("settings", new_settings.is_some()),
        ] {
            if is_changed {
                changed.push(field);
            }
        }
        if changed.is_empty() {
            return Ok(current);
        }
        let changes = OrganizationChangeset {
            name: new_name,
            slug: new_slug.as_deref(),
            settings: new_settings,
            updated_at: now,
        };
        let updated = conn
            .transaction::<_, DieselError, _>(async |conn| {
                diesel::update(organizations::table.find(organization_id))
                    .set(&changes)
                    .returning(OrganizationRow::as_returning())
                    .get_result(conn)
                    .await
            })
            .await;
        let updated = match updated {
            Ok(row) => row,
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                if info.constraint_name() == Some(SLUG_KEY) =>
            {
                return Err(slug_taken());
            }
            Err(e) => return Err(e.into()),
        };
        let mut metadata = json!({ "changed": changed });
        if new_slug.is_some() {
            metadata["slug"] = json!({ "from": current.slug, "to": updated.slug });
        }
        let entry = AuditEntry::new("org.updated", Some(actor), ip.clone())
            .target("organization", organization_id)
            .in_organization(organization_id)
            .metadata(metadata);
        audit::record(conn, entry, now).await?;
        Ok(updated)
    })
    .await
}

/// `deleteOrganization` (OWNER only; never a personal organization): the
/// organization and everything of it, and the end of every membership
/// announced, in one transaction.
#[tracing::instrument(skip_all)]
pub async fn delete(app: &AppState, actor: Uuid, organization_id: Uuid, meta: &RequestMeta) -> AppResult<()> {
    let now = app.now();
    let ip = audit_ip(meta);
    let mut conn = app.db().await?;
    let announced = conn
        .transaction::<_, AppError, _>(async |conn| {
            let (organization, _) = lock_as_member(conn, organization_id, actor, "Mutation.deleteOrganization").await?;
            refuse_personal(&organization, "deleted")?;
            let members: Vec<Uuid> = memberships::table
                .filter(memberships::organization_id.eq(organization_id))
                .select(memberships::user_id)
                .load(conn)
                .await?;
            // A paid subscription ends now, before the row that names it
            // goes; when Stripe cannot be told, nothing is deleted.
            crate::plans::deletion::cancel_for_deleted_organization(app, conn, organization_id).await?;
            if !delete_organization(conn, organization_id).await? {
                return Err(AppError::internal(anyhow::anyhow!(
                    "organization {organization_id} could not be deleted: other rows point at it"
                )));
            }
            let entry = AuditEntry::new("org.deleted", Some(actor), ip.clone())
                .target("organization", organization_id)
                .in_organization(organization_id)
                .metadata(json!({ "personal": false, "name": organization.name, "slug": organization.slug }));
            audit::record(conn, entry, now).await?;
            let ended = members.into_iter().map(|user_id| {
                MembershipEnded {
                    organization_id,
                    user_id,
                }
                .announcement()
            });
            Ok(announcements::record(conn, ended.collect()).await?)
        })
        .await?;
    drop(conn);
    app.announcements().committed(announced);
    Ok(())
}

/// Deletes an organization and everything of it, inside the caller's
/// transaction: memberships, invitations and the subscription row cascade.
/// Rows of tables that point at organizations without cascading (API keys,
/// usage) must be deleted here, before the organization's own row; this is
/// the one place `deleteOrganization` and `deleteAccount` both go through.
///
/// When something still points at the organization, the database refuses,
/// the organization is kept and `false` comes back; a savepoint keeps that
/// refusal from aborting the caller's transaction.
pub async fn delete_organization(conn: &mut AsyncPgConnection, organization_id: Uuid) -> QueryResult<bool> {
    let deleted = conn
        .transaction::<_, DieselError, _>(async |conn| {
            diesel::delete(organizations::table.find(organization_id))
                .execute(conn)
                .await
        })
        .await;
    match deleted {
        Ok(_) => Ok(true),
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)) => {
            tracing::info!(
                organization = %organization_id,
                constraint = info.constraint_name().unwrap_or_default(),
                "organization kept: other rows point at it"
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of;

    #[test]
    fn settings_are_a_small_object_jsonb_can_hold() {
        assert!(check_settings(json!({ "defaultModel": "gpt-4o" })).is_ok());
        for bad in [
            json!([1]),
            json!("x"),
            json!(null),
            json!({ "blob": "x".repeat(MAX_SETTINGS_BYTES) }),
        ] {
            assert_eq!(field_of(check_settings(bad)).as_deref(), Some("settings"));
        }
    }

    fn organization(slug: &str, personal: bool) -> OrganizationRow {
        let now = Utc::now();
        OrganizationRow {
            id: Uuid::nil(),
            name: "Acme".into(),
            slug: slug.into(),
            personal_user_id: personal.then(Uuid::nil),
            settings: json!({}),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_personal_organization_keeps_its_slug_but_may_echo_it() {
        let personal = organization("personal-0123456789ab", true);
        assert_eq!(slug_change(&personal, Some(" PERSONAL-0123456789ab ")).unwrap(), None);
        assert_eq!(
            slug_change(&personal, Some("mine")).unwrap_err().code(),
            ErrorCode::Forbidden
        );
        let team = organization("acme", false);
        assert_eq!(slug_change(&team, Some("acme")).unwrap(), None);
        assert_eq!(
            slug_change(&team, Some("Acme-Labs")).unwrap().as_deref(),
            Some("acme-labs")
        );
        assert_eq!(field_of(slug_change(&team, Some("admin"))).as_deref(), Some("slug"));
    }
}
