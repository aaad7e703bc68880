//! Device login, after RFC 8628: a device without a keyboard-friendly
//! browser (an editor extension, a CLI) starts a request and shows a short
//! user code; a person signs in on the web, types the code and approves or
//! denies; meanwhile the device polls with its secret device code until it
//! gets a session of its own, exactly once.
//!
//! The device code is a 256-bit secret stored only as SHA-256, like email
//! tokens. The user code is short enough to type, so it is unique only
//! among the requests still waiting for a person (a partial unique index),
//! and a request answers to it only while PENDING and unexpired.
//!
//! Error codes:
//! - `startDeviceLogin`: RATE_LIMITED (device bucket, shared with polling);
//!   BAD_USER_INPUT (`clientName`) for a name that is too long or has
//!   control characters.
//! - `pollDeviceLogin`: RATE_LIMITED; SLOW_DOWN when polled again sooner
//!   than the interval after the previous poll (every poll counts, so a
//!   client that ignores the interval keeps getting SLOW_DOWN);
//!   EXPIRED_TOKEN for an expired, already used or unknown device code
//!   (an unknown code is treated like one that expired and was cleaned up:
//!   either way the client must start over); AUTHORIZATION_PENDING while
//!   nobody decided; ACCESS_DENIED once denied, or when the approving
//!   account was suspended or deleted before the device collected its
//!   session.
//! - `approveDeviceLogin`, `denyDeviceLogin`, `deviceLogin`:
//!   UNAUTHENTICATED without a signed-in user; RATE_LIMITED beyond
//!   AUTH_RATE_LIMIT_PER_MINUTE uses of user codes per client address and
//!   per user (their own bucket, shared by the three; a request may hold
//!   only one of them, BAD_USER_INPUT otherwise); BAD_USER_INPUT (`userCode`)
//!   when the text cannot be a user code at all (wrong length, letters
//!   outside the alphabet); NOT_FOUND (null for `deviceLogin`) when no
//!   request waits under that code: never issued, expired, or decided
//!   already.

use chrono::{DateTime, Duration, Utc};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error as DieselError},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::Rng;
use uuid::Uuid;

use crate::accounts::throttle::{self, AuthAction};
use tollgate_auth::{
    AppState,
    email_tokens::{hash_secret, random_secret},
    sessions::{self, IssuedTokens},
    users as model,
    users::UserRow,
};
use tollgate_core::error::{AppError, AppResult, ErrorCode};
use tollgate_core::request::RequestMeta;
use tollgate_db::schema::device_logins;
use tollgate_db::text_enum;
use tollgate_platform::audit::{self, AuditEntry};

/// How long a request waits for a person (RFC 8628 suggests minutes).
pub const LIFETIME: Duration = Duration::minutes(10);
/// Seconds a device waits between polls.
pub const POLL_INTERVAL_SECS: i32 = 5;
/// Letters of a user code: consonants only, so no words can be spelled,
/// and none that look alike (no vowels means no O/0 or I/1 either).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code: 20^8 (about 2.6e10) codes.
pub const USER_CODE_LEN: usize = 8;
/// The longest client name accepted.
pub const MAX_CLIENT_NAME_LEN: usize = 100;
/// The unique index that keeps pending user codes apart.
const PENDING_USER_CODE_INDEX: &str = "device_logins_pending_user_code_key";
/// Fresh user codes tried before giving up; a clash is already rare.
const USER_CODE_ATTEMPTS: usize = 5;
/// The longest User-Agent kept.
const MAX_USER_AGENT_LEN: usize = 512;

text_enum! {
    /// Where a device login request stands.
    pub enum DeviceLoginStatus {
        /// Waiting for a person to approve or deny.
        Pending => "PENDING",
        /// Approved; the device has not collected its session yet.
        Approved => "APPROVED",
        /// Refused by the person.
        Denied => "DENIED",
        /// The device collected its session; the code is spent.
        Consumed => "CONSUMED",
    }
}

/// A row of `device_logins`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = device_logins, check_for_backend(diesel::pg::Pg))]
pub struct DeviceLoginRow {
    /// Identifier (audit target).
    pub id: Uuid,
    /// SHA-256 of the device code.
    pub device_code_hash: Vec<u8>,
    /// The user code, normalized (8 letters, no dash).
    pub user_code: String,
    /// What the device calls itself; names the session.
    pub client_name: Option<String>,
    /// Address the request came from.
    pub client_ip: Option<String>,
    /// User-Agent of the request.
    pub user_agent: Option<String>,
    /// Where it stands.
    pub status: DeviceLoginStatus,
    /// Who approved or denied it.
    pub user_id: Option<Uuid>,
    /// Seconds the device must wait between polls.
    pub interval_secs: i32,
    /// The previous poll.
    pub last_polled_at: Option<DateTime<Utc>>,
    /// When the device asked.
    pub created_at: DateTime<Utc>,
    /// When the codes stop working.
    pub expires_at: DateTime<Utc>,
    /// When a person approved or denied it.
    pub decided_at: Option<DateTime<Utc>>,
}

/// What `startDeviceLogin` hands the device.
#[derive(Debug, Clone)]
pub struct StartedDeviceLogin {
    /// The secret the device polls with (shown once, stored hashed).
    pub device_code: String,
    /// The code the person types, as displayed: `XXXX-XXXX`.
    pub user_code: String,
    /// Where the person goes to type it.
    pub verification_uri: String,
    /// The same page with the code filled in (`?code=XXXX-XXXX`).
    pub verification_uri_complete: String,
    /// Seconds until both codes expire.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i32,
}

/// A fresh user code: [`USER_CODE_LEN`] letters of [`USER_CODE_ALPHABET`],
/// normalized (no dash).
pub fn random_user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LEN)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

/// A normalized user code as people read it: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    let (first, second) = code.split_at(code.len().min(USER_CODE_LEN / 2));
    format!("{first}-{second}")
}

/// What a person typed, as stored: any case, with or without the dash or
/// spaces. None when it cannot be a user code.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid = code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

/// The user code argument, normalized; BAD_USER_INPUT (`userCode`) when it
/// cannot be one.
pub fn parse_user_code(typed: &str) -> AppResult<String> {
    normalize_user_code(typed)
        .ok_or_else(|| AppError::bad_input("userCode", "a code has 8 letters, like BCDF-GHJK (no vowels)"))
}

/// The optional client name, trimmed; empty means none.
fn clean_client_name(raw: Option<&str>) -> AppResult<Option<String>> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_CLIENT_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "clientName",
            format!("the client name must be at most {MAX_CLIENT_NAME_LEN} printable characters"),
        ));
    }
    Ok(Some(name.to_owned()))
}

/// `startDeviceLogin`: a new request, counted against the client's device
/// bucket.
#[tracing::instrument(skip_all)]
pub async fn start(app: &AppState, client_name: Option<&str>, meta: &RequestMeta) -> AppResult<StartedDeviceLogin> {
    throttle::per_client(app, AuthAction::DevicePolling, meta).await?;
    let client_name = clean_client_name(client_name)?;
    let now = app.now();
    let (device_code, device_code_hash) = random_secret();
    let user_agent = meta
        .user_agent
        .as_deref()
        .map(|ua| ua.chars().take(MAX_USER_AGENT_LEN).collect::<String>());
    let mut conn = app.db().await?;
    let mut attempts = 0;
    let user_code = loop {
        attempts += 1;
        let user_code = random_user_code();
        let inserted = diesel::insert_into(device_logins::table)
            .values((
                device_logins::id.eq(Uuid::now_v7()),
                device_logins::device_code_hash.eq(&device_code_hash),
                device_logins::user_code.eq(&user_code),
                device_logins::client_name.eq(client_name.as_deref()),
                device_logins::client_ip.eq(meta.client_ip.to_string()),
                device_logins::user_agent.eq(user_agent.as_deref()),
                device_logins::status.eq(DeviceLoginStatus::Pending),
                device_logins::interval_secs.eq(POLL_INTERVAL_SECS),
                device_logins::created_at.eq(now),
                device_logins::expires_at.eq(now + LIFETIME),
            ))
            .execute(&mut conn)
            .await;
        match inserted {
            Ok(_) => break user_code,
            // Outside a transaction, so a clash spoils nothing: draw again.
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                if info.constraint_name() == Some(PENDING_USER_CODE_INDEX) && attempts < USER_CODE_ATTEMPTS =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let user_code = display_user_code(&user_code);
    let verification_uri = app.config().device_verification_url.clone();
    let mut complete = verification_uri.clone();
    complete.query_pairs_mut().append_pair("code", &user_code);
    Ok(StartedDeviceLogin {
        device_code,
        user_code,
        verification_uri: verification_uri.to_string(),
        verification_uri_complete: complete.to_string(),
        expires_in: LIFETIME.num_seconds(),
        interval: POLL_INTERVAL_SECS,
    })
}

/// Counts one use of a user code by `user_id` from this client: a code has
/// about 35 bits, so guesses must stay slow per address and per account.
async fn throttle_user_code(app: &AppState, user_id: Uuid, meta: &RequestMeta) -> AppResult<()> {
    throttle::per_client(app, AuthAction::DeviceUserCode, meta).await?;
    throttle::per_user(app, AuthAction::DeviceUserCode, user_id).await
}

/// The request waiting under a user code (PENDING and unexpired), for the
/// person (`user_id`) to check the client's name and address before
/// deciding. Counts as a use of a user code.
pub async fn find_pending(
    app: &AppState,
    user_id: Uuid,
    user_code: &str,
    meta: &RequestMeta,
) -> AppResult<Option<DeviceLoginRow>> {
    throttle_user_code(app, user_id, meta).await?;
    let user_code = parse_user_code(user_code)?;
    let mut conn = app.db().await?;
    let row = device_logins::table
        .filter(device_logins::user_code.eq(&user_code))
        .filter(device_logins::status.eq(DeviceLoginStatus::Pending))
        .filter(device_logins::expires_at.gt(app.now()))
        .select(DeviceLoginRow::as_select())
        .first(&mut conn)
        .await
        .optional()?;
    Ok(row)
}

/// A person's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let the device in as this person.
    Approve,
    /// Refuse it.
    Deny,
}

/// `approveDeviceLogin` / `denyDeviceLogin` by the signed-in `user_id`.
/// Only a PENDING, unexpired request can be decided, once; NOT_FOUND
/// otherwise. An approval is audited as `device.approved` in the same
/// transaction. Counts as a use of a user code.
#[tracing::instrument(skip_all, fields(decision = ?decision))]
pub async fn decide(
    app: &AppState,
    user_id: Uuid,
    user_code: &str,
    decision: Decision,
    meta: &RequestMeta,
) -> AppResult<()> {
    throttle_user_code(app, user_id, meta).await?;
    let user_code = parse_user_code(user_code)?;
    let now = app.now();
    let status = match decision {
        Decision::Approve => DeviceLoginStatus::Approved,
        Decision::Deny => DeviceLoginStatus::Denied,
    };
    let ip = Some(meta.client_ip.to_string());
    let mut conn = app.db().await?;
    let decided = conn
        .transaction::<_, DieselError, _>(async move |conn| {
            // The status filter makes two racing decisions count once.
            let decided: Option<DeviceLoginRow> = diesel::update(
                device_logins::table
                    .filter(device_logins::user_code.eq(&user_code))
                    .filter(device_logins::status.eq(DeviceLoginStatus::Pending))
                    .filter(device_logins::expires_at.gt(now)),
            )
            .set((
                device_logins::status.eq(status),
                device_logins::user_id.eq(user_id),
                device_logins::decided_at.eq(now),
            ))
            .returning(DeviceLoginRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
            if let Some(row) = &decided
                && decision == Decision::Approve
            {
                let entry = AuditEntry::new("device.approved", Some(user_id), ip)
                    .target("device_login", row.id)
                    .metadata(serde_json::json!({
                        "clientName": row.client_name,
                        "clientIp": row.client_ip,
                    }));
                audit::record(conn, entry, now).await?;
            }
            Ok(decided)
        })
        .await?;
    match decided {
        Some(_) => Ok(()),
        None => Err(AppError::client(
            ErrorCode::NotFound,
            "no sign-in request waits under this code; it may have expired or been answered already",
        )),
    }
}

/// What a poll came to, decided inside the transaction so that the
/// recorded poll time commits whatever the answer.
enum Poll {
    Expired,
    SlowDown,
    Pending,
    Denied,
    Issued(Box<(UserRow, sessions::SessionRow)>),
}

/// `pollDeviceLogin`: the device's session once a person approved, exactly
/// once; otherwise the RFC 8628 error (see the module documentation).
#[tracing::instrument(skip_all)]
pub async fn poll(app: &AppState, device_code: &str, meta: &RequestMeta) -> AppResult<(UserRow, IssuedTokens)> {
    throttle::per_client(app, AuthAction::DevicePolling, meta).await?;
    let hash = hash_secret(device_code);
    let now = app.now();
    let mut conn = app.db().await?;
    let outcome = conn
        .transaction::<_, DieselError, _>(async move |conn| poll_in_transaction(conn, app, &hash, meta, now).await)
        .await?;
    match outcome {
        Poll::Issued(issued) => {
            let (user, session) = *issued;
            Ok((user, sessions::tokens_for(app, session)?))
        }
        Poll::Expired => Err(AppError::client(
            ErrorCode::ExpiredToken,
            "this device code has expired or was used; start a new sign-in",
        )),
        Poll::SlowDown => Err(AppError::client(
            ErrorCode::SlowDown,
            format!("polling too fast; wait at least {POLL_INTERVAL_SECS} seconds between polls"),
        )),
        Poll::Pending => Err(AppError::client(
            ErrorCode::AuthorizationPending,
            "waiting for the person to approve the sign-in",
        )),
        Poll::Denied => Err(AppError::client(
            ErrorCode::AccessDenied,
            "the sign-in request was denied",
        )),
    }
}

async fn poll_in_transaction(
    conn: &mut AsyncPgConnection,
    app: &AppState,
    hash: &[u8],
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> QueryResult<Poll> {
    // The row lock serializes concurrent polls of one code: the second sees
    // the first's poll time (SLOW_DOWN) and status (CONSUMED).
    let row: Option<DeviceLoginRow> = device_logins::table
        .filter(device_logins::device_code_hash.eq(hash))
        .select(DeviceLoginRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else {
        return Ok(Poll::Expired);
    };
    if row.status == DeviceLoginStatus::Consumed || row.expires_at <= now {
        return Ok(Poll::Expired);
    }
    diesel::update(device_logins::table.find(row.id))
        .set(device_logins::last_polled_at.eq(now))
        .execute(conn)
        .await?;
    let interval = Duration::seconds(i64::from(row.interval_secs));
    if row.last_polled_at.is_some_and(|previous| now - previous < interval) {
        return Ok(Poll::SlowDown);
    }
    match row.status {
        DeviceLoginStatus::Pending => Ok(Poll::Pending),
        DeviceLoginStatus::Denied => Ok(Poll::Denied),
        DeviceLoginStatus::Consumed => Ok(Poll::Expired),
        DeviceLoginStatus::Approved => {
            // Spent whatever follows: an approval is good for one session.
            diesel::update(device_logins::table.find(row.id))
                .set(device_logins::status.eq(DeviceLoginStatus::Consumed))
                .execute(conn)
                .await?;
            let approver = match row.user_id {
                Some(id) => model::find_by_ids(conn, &[id]).await?.into_iter().next(),
                None => None,
            };
            // The account may have been suspended or deleted since it approved.
            let Some(approver) = approver.filter(|u| !u.is_deleted() && u.suspended_at.is_none()) else {
                return Ok(Poll::Denied);
            };
            let session = sessions::create(conn, app, approver.id, meta, row.client_name.as_deref()).await?;
            let user = model::record_login(conn, approver.id, now).await?;
            let entry = AuditEntry::new("user.login", Some(user.id), Some(meta.client_ip.to_string()))
                .target("session", session.id)
                .metadata(serde_json::json!({
                    "method": "device",
                    "deviceLogin": row.id,
                    "clientName": row.client_name,
                }));
            audit::record(conn, entry, now).await?;
            Ok(Poll::Issued(Box::new((user, session))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_and_display_with_a_dash() {
        for _ in 0..100 {
            let code = random_user_code();
            assert_eq!(code.len(), USER_CODE_LEN);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)), "{code}");
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), USER_CODE_LEN + 1);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
        }
    }

    #[test]
    fn typed_codes_are_read_leniently_but_not_invented() {
        assert_eq!(normalize_user_code("bcdf-ghjk").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code(" BCDF GHJK ").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code("BCDFGHJK").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJKL"), None);
        assert_eq!(normalize_user_code("ABCD-EFGH"), None);
        assert_eq!(normalize_user_code("BCDF-GHJ0"), None);
        assert_eq!(normalize_user_code(""), None);
    }

    #[test]
    fn client_names_are_trimmed_and_bounded() {
        assert_eq!(clean_client_name(None).ok(), Some(None));
        assert_eq!(clean_client_name(Some("  ")).ok(), Some(None));
        assert_eq!(
            clean_client_name(Some(" VS Code ")).ok(),
            Some(Some("VS Code".to_owned()))
        );
        assert!(clean_client_name(Some(&"x".repeat(MAX_CLIENT_NAME_LEN + 1))).is_err());
        assert!(clean_client_name(Some("a\nb")).is_err());
    }
}
