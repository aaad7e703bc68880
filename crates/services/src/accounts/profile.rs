//! One's own profile: name, picture and preferences; uploaded pictures
//! stored in PostgreSQL (so every instance serves them); and deleting the
//! account, which leaves a tombstone row behind so history that points at
//! the person still resolves.

use chrono::{DateTime, Utc};
use diesel::{prelude::*, result::Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde_json::Value;
use uuid::Uuid;

use crate::orgs::model as orgs;
use tollgate_auth::{AppState, roles::OrgRole, sessions, users as model, users::UserRow};
use tollgate_core::request::RequestMeta;
use tollgate_core::{
    error::{AppError, AppResult},
    validate::{check_json_object, clean_name},
};
use tollgate_db::schema::{avatars, email_tokens, memberships, organizations, sessions as sessions_table, users};
use tollgate_platform::{
    announcements::Recorded,
    audit::{self, AuditEntry},
};

/// The largest preferences object accepted, as compact JSON.
pub const MAX_PREFERENCES_BYTES: usize = 16 * 1024;
/// The largest uploaded picture (the limit the multipart parser enforces
/// on every uploaded file, kept here too for uploads that arrive another
/// way).
pub const MAX_AVATAR_BYTES: usize = 2 * 1024 * 1024;
/// The longest picture URL accepted; browsers and proxies choke on more.
pub const MAX_AVATAR_URL_LEN: usize = 2048;
/// The name a deleted account shows wherever history mentions it.
pub const DELETED_USER_NAME: &str = "Deleted user";

/// What `updateProfile` asked to change; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    /// New display name.
    pub name: Option<String>,
    /// `Some(None)` (or an empty string) removes the picture.
    pub avatar_url: Option<Option<String>>,
    /// Replaces the whole preferences object.
    pub preferences: Option<Value>,
}

/// The columns `updateProfile` may set; `None` leaves a column alone.
#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct ProfileChangeset<'a> {
    name: Option<&'a str>,
    avatar_url: Option<Option<&'a str>>,
    preferences: Option<&'a Value>,
    updated_at: DateTime<Utc>,
}

/// Validates a picture URL: http(s) with a host, no credentials. Empty or
/// `None` means "no picture". Returns the normalized URL.
pub fn clean_avatar_url(raw: Option<&str>) -> AppResult<Option<String>> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let refuse = || AppError::bad_input("avatarUrl", "the picture URL must be an http or https URL");
    if raw.len() > MAX_AVATAR_URL_LEN {
        return Err(AppError::bad_input(
            "avatarUrl",
            format!("the picture URL must be at most {MAX_AVATAR_URL_LEN} characters"),
        ));
    }
    let url = url::Url::parse(raw).map_err(|_| refuse())?;
    let web = matches!(url.scheme(), "http" | "https");
    let has_host = url.host_str().is_some_and(|h| !h.is_empty());
    // Credentials in a URL shown to everyone who sees the profile are a leak.
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    if !web || !has_host || has_credentials {
        return Err(refuse());
    }
    // Normalizing can percent-encode and so lengthen the text.
    let url = String::from(url);
    if url.len() > MAX_AVATAR_URL_LEN {
        return Err(refuse());
    }
    Ok(Some(url))
}

/// Validates preferences: a JSON object of at most
/// [`MAX_PREFERENCES_BYTES`] as compact JSON, storable as `jsonb`.
pub fn check_preferences(value: Value) -> AppResult<Value> {
    check_json_object(value, "preferences", MAX_PREFERENCES_BYTES)
}

/// `updateProfile`: validates everything first, then changes the row.
/// Stored pictures the profile no longer shows are deleted with it.
#[tracing::instrument(skip_all)]
pub async fn update_profile(app: &AppState, user_id: Uuid, update: ProfileUpdate) -> AppResult<UserRow> {
    let name = update.name.as_deref().map(|n| clean_name(n, "name")).transpose()?;
    let avatar_url = update
        .avatar_url
        .map(|url| clean_avatar_url(url.as_deref()))
        .transpose()?;
    let preferences = update.preferences.map(check_preferences).transpose()?;
    let now = app.now();
    let mut conn = app.db().await?;
    let updated = conn
        .transaction::<_, DieselError, _>(async |conn| {
            let Some(current) = model::lock_live(conn, user_id).await? else {
                return Ok(None);
            };
            // A client that echoes the whole profile back sends the current
            // URL again: that is no change, and the stored picture stays.
            let avatar_change = avatar_url.filter(|url| *url != current.avatar_url);
            let changes = ProfileChangeset {
                name: name.as_deref(),
                avatar_url: avatar_change.as_ref().map(|url| url.as_deref()),
                preferences: preferences.as_ref(),
                updated_at: now,
            };
            let user = diesel::update(users::table.find(user_id))
                .set(&changes)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?;
            if avatar_change.is_some() {
                delete_avatars_of(conn, user_id, None).await?;
            }
            Ok(Some(user))
        })
        .await?;
    updated.ok_or_else(AppError::unauthenticated)
}

/// Deletes a user's stored pictures, all of them or all but `keep`.
async fn delete_avatars_of(conn: &mut AsyncPgConnection, user_id: Uuid, keep: Option<Uuid>) -> QueryResult<usize> {
    diesel::delete(
        avatars::table
            .filter(avatars::user_id.eq(user_id))
            .filter(avatars::id.ne(keep.unwrap_or(Uuid::nil()))),
    )
    .execute(conn)
    .await
}

/// An accepted picture format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
}

impl ImageType {
    /// The Content-Type it is stored and served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// The format of `bytes`, judged by their signature and enough of the
    /// structure behind it that another kind of file is not taken for an
    /// image. The client's declared type and file name are never trusted.
    /// Images are not decoded: they are served with `nosniff` and a CSP
    /// that allows nothing, so a crafted file stays inert.
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        if is_png(bytes) {
            Some(Self::Png)
        } else if is_jpeg(bytes) {
            Some(Self::Jpeg)
        } else if is_webp(bytes) {
            Some(Self::Webp)
        } else {
            None
        }
    }
}

/// Signature, an IHDR chunk first with a non-zero size, an IEND chunk last.
fn is_png(bytes: &[u8]) -> bool {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    const IHDR: &[u8] = b"\0\0\0\x0dIHDR";
    const IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";
    let Some(header) = bytes.get(..24) else {
        return false;
    };
    let width = &header[16..20];
    let height = &header[20..24];
    header.starts_with(SIGNATURE)
        && &header[8..16] == IHDR
        && width != [0; 4]
        && height != [0; 4]
        && bytes.len() >= SIGNATURE.len() + 25 + IEND.len()
        && bytes.ends_with(IEND)
}

/// Start-of-image followed by a marker (JFIF, Exif, a table, a frame).
fn is_jpeg(bytes: &[u8]) -> bool {
    matches!(bytes, [0xFF, 0xD8, 0xFF, marker, ..] if (0xC0..=0xFE).contains(marker)) && bytes.len() > 4
}

/// A RIFF container of type WEBP whose declared size is the file's, with
/// a VP8, VP8L or VP8X chunk first.
fn is_webp(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..16) else {
        return false;
    };
    let declared = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    header.starts_with(b"RIFF")
        && &header[8..12] == b"WEBP"
        && matches!(&header[12..16], b"VP8 " | b"VP8L" | b"VP8X")
        && usize::try_from(declared).is_ok_and(|size| size.checked_add(8) == Some(bytes.len()))
}

/// A row of `avatars`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = avatars, check_for_backend(diesel::pg::Pg))]
pub struct AvatarRow {
    /// Random, and part of the picture's URL.
    pub id: Uuid,
    /// Whose picture it is.
    pub user_id: Uuid,
    /// `image/png`, `image/jpeg` or `image/webp`, as detected at upload.
    pub content_type: String,
    /// The file as uploaded.
    pub bytes: Vec<u8>,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

/// The stored picture with this id.
pub async fn find_avatar(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<AvatarRow>> {
    avatars::table
        .find(id)
        .select(AvatarRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// `uploadAvatar`: checks the picture, stores it under a new id, points
/// the profile at it and deletes the user's previous pictures, all at once.
#[tracing::instrument(skip_all, fields(size = bytes.len()))]
pub async fn store_avatar(app: &AppState, user_id: Uuid, bytes: Vec<u8>) -> AppResult<UserRow> {
    if bytes.is_empty() {
        return Err(AppError::bad_input("file", "the file is empty"));
    }
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(AppError::bad_input(
            "file",
            format!("the picture must be at most {} MiB", MAX_AVATAR_BYTES / (1024 * 1024)),
        ));
    }
    let kind = ImageType::detect(&bytes)
        .ok_or_else(|| AppError::bad_input("file", "the picture must be a PNG, JPEG or WebP image"))?;
    // A random id: a new picture gets a new URL (so the served bytes can be
    // cached forever), and nobody can walk through everyone's pictures.
    let id = Uuid::new_v4();
    let url = app.config().public_endpoint(&format!("avatars/{id}"));
    let now = app.now();
    let mut conn = app.db().await?;
    let stored = conn
        .transaction::<_, DieselError, _>(async |conn| {
            // Updating the user first takes its row lock, so two uploads at
            // once run one after the other and the later one deletes the
            // earlier one's picture.
            let user = diesel::update(users::table.find(user_id).filter(users::deleted_at.is_null()))
                .set((users::avatar_url.eq(&url), users::updated_at.eq(now)))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let Some(user) = user else {
                return Ok(None);
            };
            diesel::insert_into(avatars::table)
                .values((
                    avatars::id.eq(id),
                    avatars::user_id.eq(user_id),
                    avatars::content_type.eq(kind.content_type()),
                    avatars::bytes.eq(&bytes),
                    avatars::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
            delete_avatars_of(conn, user_id, Some(id)).await?;
            Ok(Some(user))
        })
        .await?;
    stored.ok_or_else(AppError::unauthenticated)
}

/// How a deletion attempt ended inside its transaction.
enum Deletion {
    Done(Recorded),
    Gone,
    WrongPassword,
    OwnsSharedOrganization,
}

/// `deleteAccount`: after the password is checked, turns the caller's
/// account into a tombstone ([`tombstone`]) in one transaction. Access
/// tokens stop working at once.
#[tracing::instrument(skip_all)]
pub async fn delete_account(
    app: &AppState,
    user_id: Uuid,
    password: SecretString,
    meta: &RequestMeta,
) -> AppResult<()> {
    let mut conn = app.db().await?;
    let user = users::table
        .find(user_id)
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(&mut conn)
        .await
        .optional()?
        .ok_or_else(AppError::unauthenticated)?;
    drop(conn);
    crate::accounts::login::confirm_password(app, &user, password, "password").await?;
    let now = app.now();
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    let outcome = conn
        .transaction::<_, AppError, _>(async |conn| {
            let Some(locked) = model::lock_live(conn, user_id).await? else {
                return Ok(Deletion::Gone);
            };
            // The password may have changed while it was being checked.
            if locked.password_hash != user.password_hash {
                return Ok(Deletion::WrongPassword);
            }
            tollgate_auth::users::refuse_last_admin(conn, &locked).await?;
            Ok(match tombstone(app, conn, user_id, user_id, ip.clone(), now).await? {
                Tombstoned::Done(announced) => Deletion::Done(announced),
                Tombstoned::OwnsSharedOrganization => Deletion::OwnsSharedOrganization,
            })
        })
        .await?;
    drop(conn);
    match outcome {
        Deletion::Done(announced) => {
            app.announcements().committed(announced);
            Ok(())
        }
        Deletion::Gone => Err(AppError::unauthenticated()),
        Deletion::WrongPassword => Err(wrong_password()),
        Deletion::OwnsSharedOrganization => Err(AppError::conflict(
            "you own an organization with other members: transfer it or remove them first",
        )),
    }
}

/// What [`tombstone`] came to.
pub enum Tombstoned {
    /// The account is a tombstone now; its sessions and keys ended
    /// (announced: apply on this instance once the transaction commits).
    Done(Recorded),
    /// The person owns an organization with other members; nothing changed.
    OwnsSharedOrganization,
}

/// Deletes an account, the rules `deleteAccount` and staff's `deleteUser`
/// share, inside the caller's transaction, which has locked the live user
/// row. Unless the person owns an organization with other members: ends
/// every session, deletes their pictures, pending email tokens and the
/// organizations they own alone (their personal one included), removes
/// their other memberships, and turns the user row into a tombstone (no
/// email, name, password, picture or preferences), which frees the email
/// for a new sign-up. `actor_id` (the person, or staff) is audited as the
/// one who did it.
pub async fn tombstone(
    app: &AppState,
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    actor_id: Uuid,
    ip: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<Tombstoned> {
    let owned = lock_owned_organizations(conn, user_id).await?;
    if orgs::owned_with_other_members(conn, user_id).await? > 0 {
        return Ok(Tombstoned::OwnsSharedOrganization);
    }
    let mut kept = Vec::new();
    for (organization_id, personal) in owned {
        // A paid subscription ends now, before the row that names it goes;
        // when Stripe cannot be told, nothing is deleted.
        crate::plans::deletion::cancel_for_deleted_organization(app, conn, organization_id).await?;
        if crate::orgs::service::delete_organization(conn, organization_id).await? {
            let entry = AuditEntry::new("org.deleted", Some(actor_id), ip.clone())
                .target("organization", organization_id)
                .in_organization(organization_id)
                .metadata(serde_json::json!({ "personal": personal, "reason": "account deleted" }));
            audit::record(conn, entry, now).await?;
        } else {
            if personal {
                // It was named after the person.
                diesel::update(organizations::table.find(organization_id))
                    .set((
                        organizations::name.eq(DELETED_USER_NAME),
                        organizations::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
            }
            kept.push(organization_id);
        }
    }
    // Memberships of kept organizations stay, so they keep their one
    // OWNER; every other membership goes.
    diesel::delete(
        memberships::table
            .filter(memberships::user_id.eq(user_id))
            .filter(memberships::organization_id.ne_all(&kept)),
    )
    .execute(conn)
    .await?;
    let ended = sessions::revoke_all_of_user(conn, user_id, None, "user.deleted", now).await?;
    // Where and with what the person signed in is theirs too; the
    // session rows stay for the history that points at them.
    diesel::update(sessions_table::table.filter(sessions_table::user_id.eq(user_id)))
        .set((
            sessions_table::ip.eq(None::<String>),
            sessions_table::user_agent.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    delete_avatars_of(conn, user_id, None).await?;
    // An unused verification or reset link must not act on a tombstone.
    diesel::delete(email_tokens::table.filter(email_tokens::user_id.eq(user_id)))
        .execute(conn)
        .await?;
    diesel::update(users::table.find(user_id))
        .set((
            users::deleted_at.eq(now),
            users::email.eq(format!("deleted-{user_id}@deleted.invalid")),
            users::name.eq(DELETED_USER_NAME),
            users::password_hash.eq(None::<String>),
            users::avatar_url.eq(None::<String>),
            users::preferences.eq(Value::Object(Default::default())),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    let entry = AuditEntry::new("user.deleted", Some(actor_id), ip)
        .target("user", user_id)
        .metadata(serde_json::json!({ "keptOrganizations": kept }));
    audit::record(conn, entry, now).await?;
    let announced = sessions::announce_account_closed(conn, user_id, &ended).await?;
    Ok(Tombstoned::Done(announced))
}

fn wrong_password() -> AppError {
    AppError::bad_input("password", "the password is not correct")
}

/// The organizations the user owns or that are theirs personally, as
/// `(id, personal)`, locked: a membership being added meanwhile waits on
/// the lock (its foreign key check), so nobody joins between the check
/// for other members and the deletion.
async fn lock_owned_organizations(conn: &mut AsyncPgConnection, user_id: Uuid) -> QueryResult<Vec<(Uuid, bool)>> {
    let owned = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::role.eq(OrgRole::Owner))
        .select(memberships::organization_id);
    let rows: Vec<(Uuid, Option<Uuid>)> = organizations::table
        .filter(
            organizations::id
                .eq_any(owned)
                .or(organizations::personal_user_id.eq(user_id)),
        )
        .select((organizations::id, organizations::personal_user_id))
        .order(organizations::id)
        .for_update()
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, personal)| (id, personal == Some(user_id)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of;

    /// A 1x1 PNG (67 bytes).
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\
        \0\0\0\x0aIDATx\x9cc\0\x01\0\0\x05\0\x01\x0d\x0a\x2d\xb4\0\0\0\0IEND\xae\x42\x60\x82";

    #[test]
    fn images_are_told_by_their_bytes() {
        assert_eq!(PNG.len(), 67);
        assert_eq!(ImageType::detect(PNG), Some(ImageType::Png));
        assert_eq!(ImageType::detect(&PNG[..60]), None, "a truncated PNG");
        assert_eq!(
            ImageType::detect(b"\xff\xd8\xff\xe0\0\x10JFIF\0"),
            Some(ImageType::Jpeg)
        );
        assert_eq!(ImageType::detect(b"\xff\xd8\xff"), None);
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\x05\0\0\0\x2f\0\0\0\0\0".to_vec();
        let size = u32::try_from(webp.len() - 8).unwrap().to_le_bytes();
        webp[4..8].copy_from_slice(&size);
        assert_eq!(ImageType::detect(&webp), Some(ImageType::Webp));
        webp.push(0);
        assert_eq!(ImageType::detect(&webp), None, "a RIFF size that is not the file's");
        assert_eq!(ImageType::detect(b"hello, I am a text file.png"), None);
        assert_eq!(ImageType::detect(b"GIF89a\x01\0\x01\0"), None);
        assert_eq!(ImageType::detect(b""), None);
    }

    #[test]
    fn picture_urls_must_be_web_urls() {
        assert_eq!(clean_avatar_url(None).unwrap(), None);
        assert_eq!(clean_avatar_url(Some("  ")).unwrap(), None);
        assert_eq!(
            clean_avatar_url(Some(" https://cdn.example.com/a.png "))
                .unwrap()
                .as_deref(),
            Some("https://cdn.example.com/a.png")
        );
        for bad in [
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "ftp://example.com/a.png",
            "not a url",
            "https://user:pass@example.com/a.png",
            "/relative/a.png",
        ] {
            assert_eq!(
                field_of(clean_avatar_url(Some(bad))).as_deref(),
                Some("avatarUrl"),
                "{bad}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_AVATAR_URL_LEN));
        assert_eq!(field_of(clean_avatar_url(Some(&long))).as_deref(), Some("avatarUrl"));
    }

    #[test]
    fn preferences_are_a_small_object_jsonb_can_hold() {
        assert!(check_preferences(serde_json::json!({ "theme": "dark" })).is_ok());
        for bad in [
            serde_json::json!([1, 2]),
            serde_json::json!("dark"),
            serde_json::json!(null),
            serde_json::json!({ "blob": "x".repeat(MAX_PREFERENCES_BYTES) }),
        ] {
            assert_eq!(field_of(check_preferences(bad)).as_deref(), Some("preferences"));
        }
        // Exactly at the limit is fine.
        let padding = MAX_PREFERENCES_BYTES - r#"{"p":""}"#.len();
        assert!(check_preferences(serde_json::json!({ "p": "x".repeat(padding) })).is_ok());
    }
}
