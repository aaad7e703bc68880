//! Test harness: shared services, apps on port 0, and request helpers.

pub mod github_fake;
pub mod llm_fake;
pub mod node;
pub mod oauth_common;
pub mod oidc_fake;
pub mod people;
pub mod sdl;
pub mod services;
pub mod smtp;
pub mod stripe;
pub mod test_app;
pub mod ws;

pub use services::services;
pub use test_app::{GqlResponse, TestApp, TestAppOptions};

use tollgate::auth::users::{self, NewUser, Role};
use uuid::Uuid;

/// Inserts a user straight into the app's database (no password that can
/// sign in) and returns its id.
pub async fn create_user(app: &TestApp, email: &str, role: Role) -> Uuid {
    let now = app.state.now();
    let mut conn = app.db().await;
    let user = users::insert(
        &mut conn,
        &NewUser {
            id: Uuid::now_v7(),
            email,
            name: "Test User",
            password_hash: Some("!"),
            role,
            email_verified_at: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .expect("inserting a user");
    user.id
}
