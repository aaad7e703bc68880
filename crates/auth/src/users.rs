//! User rows and their queries.

use chrono::{DateTime, Utc};
use diesel::{dsl::count_star, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_core::Config;
use tollgate_core::error::{AppError, AppResult, ErrorCode};
use tollgate_db::schema::users;
use tollgate_db::text_enum;

text_enum! {
    /// Platform-wide role.
    pub enum Role {
        /// An ordinary account.
        User => "USER",
        /// Staff who read everything and can suspend.
        Support => "SUPPORT",
        /// Staff with every power.
        Admin => "ADMIN",
    }
}

impl Role {
    /// ADMIN and SUPPORT: platform staff, who may read every tenant.
    pub fn is_staff(self) -> bool {
        matches!(self, Self::Admin | Self::Support)
    }
}

/// A row of `users`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub suspension_reason: Option<String>,
    pub preferences: serde_json::Value,
    pub last_login_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When TOTP was turned on; None while sign-in needs no second factor.
    pub mfa_enabled_at: Option<DateTime<Utc>>,
}

impl UserRow {
    /// A deleted account's tombstone.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// Whether sign-in needs a second factor (TOTP).
    pub fn mfa_enabled(&self) -> bool {
        self.mfa_enabled_at.is_some()
    }

    /// What this account's platform role lets it do now. Every check of
    /// staff powers asks this, so REQUIRE_MFA_FOR_STAFF holds everywhere:
    /// staff without TOTP keep their role but not its powers.
    pub fn staff_standing(&self, config: &Config) -> StaffStanding {
        if self.is_deleted() || !self.role.is_staff() {
            StaffStanding::NotStaff
        } else if config.require_mfa_for_staff && !self.mfa_enabled() {
            StaffStanding::NeedsMfa(self.role)
        } else {
            StaffStanding::Staff(self.role)
        }
    }
}

/// What a user is as platform staff (see [`UserRow::staff_standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffStanding {
    /// An ordinary account (or a deleted one).
    NotStaff,
    /// ADMIN or SUPPORT, with the role's powers.
    Staff(Role),
    /// ADMIN or SUPPORT whose powers wait until they turn TOTP on
    /// (REQUIRE_MFA_FOR_STAFF).
    NeedsMfa(Role),
}

/// Why staff without TOTP are refused, when REQUIRE_MFA_FOR_STAFF is on.
pub const ENROLL_TOTP_FIRST: &str =
    "staff access requires two-factor authentication: enroll TOTP first (enrollTotp, then confirmTotp)";

impl StaffStanding {
    /// The role whose powers are in force, if any.
    pub fn role(self) -> Option<Role> {
        match self {
            Self::Staff(role) => Some(role),
            Self::NotStaff | Self::NeedsMfa(_) => None,
        }
    }

    /// The role, if it is staff, whether or not its powers are in force.
    pub fn held_role(self) -> Option<Role> {
        match self {
            Self::Staff(role) | Self::NeedsMfa(role) => Some(role),
            Self::NotStaff => None,
        }
    }

    /// Staff powers of at least `min` (SUPPORT: any staff; ADMIN: ADMIN
    /// only). FORBIDDEN otherwise, saying to enroll TOTP when that is all
    /// that is missing.
    pub fn require(self, min: Role) -> AppResult<Role> {
        let enough = |role: Role| role == min || role == Role::Admin;
        match self {
            Self::Staff(role) if enough(role) => Ok(role),
            Self::NeedsMfa(role) if enough(role) => Err(enroll_totp_first()),
            _ => Err(AppError::forbidden()),
        }
    }
}

/// FORBIDDEN, saying to enroll TOTP (REQUIRE_MFA_FOR_STAFF).
pub fn enroll_totp_first() -> AppError {
    AppError::client(ErrorCode::Forbidden, ENROLL_TOTP_FIRST)
}

/// What a listing of people shows of each: a [`UserRow`] without its
/// password hash, preferences (a JSON document to parse per row),
/// suspension reason and MFA state. An admin's page of 100 organizations
/// lists 1,000 members, and decoding their full rows was a fifth of that
/// read's instructions.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserSummary {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for UserSummary {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            name: row.name,
            avatar_url: row.avatar_url,
            role: row.role,
            email_verified_at: row.email_verified_at,
            suspended_at: row.suspended_at,
            last_login_at: row.last_login_at,
            created_at: row.created_at,
        }
    }
}

/// A user about to be inserted.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub name: &'a str,
    /// None for an account made through an identity provider.
    pub password_hash: Option<&'a str>,
    pub role: Role,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Users with these ids, deleted ones included (history points at them).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<UserRow>> {
    users::table
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// The live account with this (normalized) email.
pub async fn find_live_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::email.eq(email))
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts a user.
pub async fn insert(conn: &mut AsyncPgConnection, user: &NewUser<'_>) -> QueryResult<UserRow> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Makes an existing user an ADMIN with a verified email and a new password.
pub async fn promote_to_admin(
    conn: &mut AsyncPgConnection,
    user: &UserRow,
    password_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<UserRow> {
    diesel::update(users::table.find(user.id))
        .set((
            users::role.eq(Role::Admin),
            users::password_hash.eq(password_hash),
            users::email_verified_at.eq(user.email_verified_at.unwrap_or(now)),
            users::updated_at.eq(now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Stamps a successful sign-in.
pub async fn record_login(conn: &mut AsyncPgConnection, id: Uuid, now: DateTime<Utc>) -> QueryResult<UserRow> {
    diesel::update(users::table.find(id))
        .set(users::last_login_at.eq(now))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Replaces the password hash.
pub async fn set_password(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    password_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<UserRow> {
    diesel::update(users::table.find(id))
        .set((users::password_hash.eq(password_hash), users::updated_at.eq(now)))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Removes the password (an account taken over through an identity
/// provider): only the provider, or a password reset, signs it in now.
pub async fn remove_password(conn: &mut AsyncPgConnection, id: Uuid, now: DateTime<Utc>) -> QueryResult<UserRow> {
    diesel::update(users::table.find(id))
        .set((users::password_hash.eq(None::<String>), users::updated_at.eq(now)))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Marks the email verified (keeping the first verification time).
pub async fn mark_verified(conn: &mut AsyncPgConnection, user: &UserRow, now: DateTime<Utc>) -> QueryResult<UserRow> {
    diesel::update(users::table.find(user.id))
        .set((
            users::email_verified_at.eq(user.email_verified_at.unwrap_or(now)),
            users::updated_at.eq(now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// A live (not deleted) user by id.
pub async fn find_live(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id)
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A live user by id, locked for the rest of the transaction, so actions
/// on one account (deleting it, suspending it, changing its role) apply one
/// after the other. Not against rows that merely reference it (a usage
/// event's foreign-key check): a recording, which holds its organization's
/// lock, would otherwise deadlock with a deletion that locks the user and
/// then the organizations.
pub async fn lock_live(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id)
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .for_no_key_update()
        .first(conn)
        .await
        .optional()
}

/// FORBIDDEN until the account has proved its email address. Anyone can
/// sign up with someone else's address; what such an account creates
/// beyond its personal organization (API keys, team organizations) would
/// outlive the real owner's takeover by password reset, so it creates
/// nothing until the address is proved.
pub async fn require_verified(conn: &mut AsyncPgConnection, user_id: Uuid) -> AppResult<()> {
    let user = find_live(conn, user_id).await?.ok_or_else(AppError::unauthenticated)?;
    if user.email_verified_at.is_none() {
        return Err(AppError::client(ErrorCode::Forbidden, "verify your email first"));
    }
    Ok(())
}

/// Advisory lock key serializing staff actions on accounts ("staffusr").
pub const STAFF_ACTIONS_LOCK: i64 = 0x7374_6166_6675_7372;

/// Refuses (CONFLICT) to let the platform's last active ADMIN go, under
/// the staff actions' lock so that two admins leaving at once cannot both
/// pass. For a person deleting their own account.
pub async fn refuse_last_admin(conn: &mut AsyncPgConnection, user: &UserRow) -> AppResult<()> {
    if user.role != Role::Admin {
        return Ok(());
    }
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(STAFF_ACTIONS_LOCK)
        .execute(conn)
        .await?;
    if other_active_admins(conn, user.id).await? == 0 {
        return Err(AppError::conflict(
            "the last ADMIN cannot delete their account: make someone else ADMIN first",
        ));
    }
    Ok(())
}

/// Active (live, unsuspended) ADMINs other than `except`.
pub async fn other_active_admins(conn: &mut AsyncPgConnection, except: Uuid) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::deleted_at.is_null())
        .filter(users::suspended_at.is_null())
        .filter(users::id.ne(except))
        .select(count_star())
        .get_result(conn)
        .await
}
