//! Uploaded pictures: told by their bytes, stored in PostgreSQL (so every
//! instance serves them), one per user.

use chrono::{DateTime, Utc};
use diesel::{prelude::*, result::Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use tollgate_auth::{AppState, users::UserRow};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::{avatars, users};

/// The largest uploaded picture (the limit the multipart parser enforces
/// on every uploaded file, kept here too for uploads that arrive another
/// way).
pub const MAX_AVATAR_BYTES: usize = 2 * 1024 * 1024;

/// Deletes a user's stored pictures, all of them or all but `keep`.
pub(super) async fn delete_avatars_of(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> QueryResult<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
