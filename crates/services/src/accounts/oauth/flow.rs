//! `startOAuthLogin` and the server-side half of a flow: state (SHA-256
//! only), nonce and PKCE verifier (encrypted), where to send the browser
//! back, and the user a linking flow is for. Ten minutes, single use.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use oauth2::PkceCodeChallenge;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{
    github, oidc,
    providers::{FlowSecrets, Provider, callback_url},
};
use crate::accounts::throttle::{self, AuthAction};
use tollgate_auth::{
    AppState,
    email_tokens::{hash_secret, random_secret},
    users as model,
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_core::request::RequestMeta;
use tollgate_core::return_url::allowed_return_url;
use tollgate_db::schema::oauth_flows;

/// How long a person has at the provider.
pub const LIFETIME: Duration = Duration::minutes(10);

/// How long a spent-by-time flow is kept, so that its late callback can
/// still say `?error=expired` to the right place.
const KEPT_AFTER_EXPIRY: Duration = Duration::days(1);

/// A flow read back at the callback.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_flows, check_for_backend(diesel::pg::Pg))]
pub struct FlowRow {
    /// Row id.
    pub id: Uuid,
    /// The provider's key.
    pub provider: String,
    /// Where the browser goes back to (an allowed origin, checked at start).
    pub redirect_uri: String,
    /// The OIDC nonce.
    pub nonce: String,
    /// The PKCE verifier, encrypted.
    pub pkce_verifier: Vec<u8>,
    /// The signed-in user who asked to link the provider, if any.
    pub link_user_id: Option<Uuid>,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

/// `startOAuthLogin`: the provider's authorization URL for `provider_key`.
/// `link_user` is the signed-in caller, whose account the provider is
/// linked to instead of signing in. BAD_USER_INPUT for an unknown
/// provider (`provider`) or a redirect URI off the app's own origins
/// (`redirectUri`).
#[tracing::instrument(skip_all, fields(provider = provider_key))]
pub async fn start(
    app: &AppState,
    provider_key: &str,
    redirect_uri: &str,
    link_user: Option<Uuid>,
    meta: &RequestMeta,
) -> AppResult<String> {
    throttle::per_client(app, AuthAction::OAuth, meta).await?;
    let config = app.config();
    let provider = Provider::find(config, provider_key).ok_or_else(|| {
        AppError::bad_input(
            "provider",
            "no such identity provider here: clientConfig.authProviders lists them",
        )
    })?;
    let redirect_uri = allowed_return_url(config, "redirectUri", redirect_uri)?;
    if let Some(user_id) = link_user {
        model::find_live(&mut *app.db().await?, user_id)
            .await?
            .ok_or_else(AppError::unauthenticated)?;
    }
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let secrets = FlowSecrets {
        state: random_secret().0,
        nonce: random_secret().0,
        pkce_verifier: verifier.secret().to_owned(),
    };
    let callback = callback_url(config);
    // Discovery talks to the provider: no pooled connection is held.
    let url = match provider {
        Provider::Github(github) => github::authorization_url(github, &callback, &secrets, challenge)?,
        Provider::Oidc(oidc) => oidc::authorization_url(oidc, &callback, &secrets, challenge).await?,
    };
    let encrypted = app.secrets().encrypt(&secrets.pkce_verifier)?;
    let now = app.now();
    let mut conn = app.db().await?;
    sweep(&mut conn, now).await?;
    diesel::insert_into(oauth_flows::table)
        .values((
            oauth_flows::id.eq(Uuid::now_v7()),
            oauth_flows::state_hash.eq(hash_secret(&secrets.state)),
            oauth_flows::provider.eq(provider.key()),
            oauth_flows::redirect_uri.eq(redirect_uri),
            oauth_flows::nonce.eq(&secrets.nonce),
            oauth_flows::pkce_verifier.eq(encrypted),
            oauth_flows::link_user_id.eq(link_user),
            oauth_flows::created_at.eq(now),
            oauth_flows::expires_at.eq(now + LIFETIME),
        ))
        .execute(&mut conn)
        .await?;
    Ok(url)
}

/// Deletes flows whose late callbacks need no answer any more.
async fn sweep(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(oauth_flows::table.filter(oauth_flows::expires_at.lt(now - KEPT_AFTER_EXPIRY)))
        .execute(conn)
        .await
}

/// Spends the flow of `state`, whatever comes of it: a state works once.
/// None for a state that was never issued, or was spent.
pub async fn take(conn: &mut AsyncPgConnection, state: &str) -> QueryResult<Option<FlowRow>> {
    diesel::delete(oauth_flows::table.filter(oauth_flows::state_hash.eq(hash_secret(state))))
        .returning(FlowRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

impl FlowRow {
    /// The state, nonce and verifier again, for the exchange.
    pub fn secrets(&self, app: &AppState, state: &str) -> AppResult<FlowSecrets> {
        let verifier = app.secrets().decrypt(&self.pkce_verifier)?;
        Ok(FlowSecrets {
            state: state.to_owned(),
            nonce: self.nonce.clone(),
            pkce_verifier: verifier.expose_secret().to_owned(),
        })
    }
}
