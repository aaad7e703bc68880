//! The profile mutations: `updateProfile`, `uploadAvatar` and
//! `deleteAccount`.

use std::io::{Read, Seek, SeekFrom};

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Upload};
use secrecy::SecretString;

use crate::{api::accounts::query::User, context::ContextExt, error::ApiResult};
use tollgate_core::error::AppError;
use tollgate_services::accounts::profile::{self, MAX_AVATAR_BYTES, ProfileUpdate};

/// Changes to one's own profile; an omitted field keeps its value.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// Display name, 1 to 100 printable characters; null keeps the current one.
    pub name: Option<String>,
    /// An http or https picture URL; null or empty removes the picture.
    pub avatar_url: MaybeUndefined<String>,
    /// Replaces all preferences: a JSON object of at most 16 KiB; null keeps the current ones.
    pub preferences: Option<serde_json::Value>,
}

impl From<UpdateProfileInput> for ProfileUpdate {
    fn from(input: UpdateProfileInput) -> Self {
        Self {
            name: input.name,
            avatar_url: match input.avatar_url {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(url) => Some(Some(url)),
            },
            preferences: input.preferences,
        }
    }
}

/// Mutations on one's own profile and account.
#[derive(Default)]
pub struct ProfileMutation;

#[Object]
impl ProfileMutation {
    /// Changes the caller's name, picture URL or preferences.
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> ApiResult<User> {
        let user_id = ctx.principal()?.require_user()?;
        let user = profile::update_profile(ctx.app()?, user_id, input.into()).await?;
        Ok(User::new(user))
    }

    /// PNG, JPEG or WebP, at most 2 MiB.
    async fn upload_avatar(&self, ctx: &Context<'_>, file: Upload) -> ApiResult<User> {
        let user_id = ctx.principal()?.require_user()?;
        let app = ctx.app()?;
        // async-graphql looks the file up by the number in the variable's
        // text, which a plain JSON request can write itself; a number with
        // no file behind it would panic there. (`query_env` is hidden API;
        // the exact async-graphql version is pinned in Cargo.toml.)
        if file.0 >= ctx.query_env.uploads.len() {
            return Err(AppError::bad_input("file", "no file was sent with the request").into());
        }
        let upload = file.value(ctx).map_err(AppError::internal)?;
        // Refuse by size before reading anything into memory.
        let size = upload.size().map_err(AppError::internal)?;
        if size > MAX_AVATAR_BYTES as u64 {
            return Err(too_large().into());
        }
        let mut content = upload.content;
        let bytes = tokio::task::spawn_blocking(move || {
            // The handle shares its offset with every clone of the upload:
            // start from the beginning whatever read it before.
            content.seek(SeekFrom::Start(0))?;
            let mut bytes = Vec::new();
            // One byte over the limit is enough to tell it is too large.
            content.take(MAX_AVATAR_BYTES as u64 + 1).read_to_end(&mut bytes)?;
            Ok::<_, std::io::Error>(bytes)
        })
        .await?
        .map_err(AppError::internal)?;
        let user = profile::store_avatar(app, user_id, bytes).await?;
        Ok(User::new(user))
    }

    /// Deletes the caller's account after checking the password. Refused (CONFLICT) while the caller owns an organization with other members. Organizations the caller owns alone are deleted; the email can sign up again.
    async fn delete_account(&self, ctx: &Context<'_>, password: String) -> ApiResult<bool> {
        let user_id = ctx.principal()?.require_user()?;
        profile::delete_account(ctx.app()?, user_id, SecretString::from(password), ctx.request_meta()?).await?;
        Ok(true)
    }
}

fn too_large() -> AppError {
    AppError::bad_input(
        "file",
        format!("the picture must be at most {} MiB", MAX_AVATAR_BYTES / (1024 * 1024)),
    )
}
