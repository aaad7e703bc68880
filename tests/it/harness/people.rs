//! Signing people up through the API, as a client does.

use serde_json::{Value, json};
use uuid::Uuid;

use super::TestApp;

/// The password every test person signs up with.
pub const PASSWORD: &str = "correct horse battery staple";

/// The sign-up mutation, selecting what tests look at.
pub const REGISTER: &str = "mutation ($input: RegisterInput!) { register(input: $input) {
    accessToken refreshToken tokenType expiresIn user { id email name emailVerified lastLoginAt } } }";

/// Tokens of a signed-in person.
pub struct SignedIn {
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
    /// The person's user id.
    pub user_id: Uuid,
}

impl SignedIn {
    /// Reads an AuthPayload.
    pub fn from(payload: &Value) -> Self {
        Self {
            access: payload["accessToken"].as_str().expect("accessToken").to_owned(),
            refresh: payload["refreshToken"].as_str().expect("refreshToken").to_owned(),
            user_id: payload["user"]["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("user id"),
        }
    }
}

/// Signs a new person up with [`PASSWORD`].
pub async fn register(app: &TestApp, email: &str) -> SignedIn {
    let input = json!({ "input": { "email": email, "password": PASSWORD, "name": "Ada Lovelace" } });
    SignedIn::from(&app.graphql(REGISTER, input).await.data()["register"])
}
