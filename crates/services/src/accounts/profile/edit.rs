//! updateProfile: name, picture URL and preferences, checked first.

use chrono::{DateTime, Utc};
use diesel::{prelude::*, result::Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::pictures::delete_avatars_of;
use tollgate_auth::{AppState, users as model, users::UserRow};
use tollgate_core::{
    error::{AppError, AppResult},
    validate::{check_json_object, clean_name},
};
use tollgate_db::schema::users;

/// The largest preferences object accepted, as compact JSON.
pub const MAX_PREFERENCES_BYTES: usize = 16 * 1024;
/// The longest picture URL accepted; browsers and proxies choke on more.
pub const MAX_AVATAR_URL_LEN: usize = 2048;

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

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of;

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
