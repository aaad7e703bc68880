//! Signing people up through the API, as a client does.

use serde_json::{Value, json};
use tollgate::auth::email_tokens::{self, TokenPurpose};
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

/// Verifies the email of `user_id` (whose address is `email`) the way a
/// person does, through `verifyEmail`, with a token minted like the one of
/// the verification email.
pub async fn verify_email(app: &TestApp, user_id: Uuid, email: &str) {
    let token = {
        let mut conn = app.db().await;
        email_tokens::create(&mut conn, user_id, email, TokenPurpose::VerifyEmail, app.state.now())
            .await
            .expect("a verification token")
    };
    let verified = app
        .graphql(
            "mutation ($t: String!) { verifyEmail(token: $t) { emailVerified } }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(verified.data()["verifyEmail"]["emailVerified"], true);
}

/// Verifies the email of whoever holds `token` (an account's access
/// token), unless it is verified already: unverified accounts may create
/// neither API keys nor organizations. Does nothing for other tokens.
pub async fn verify_caller(app: &TestApp, token: &str) {
    let me = app
        .graphql_as(token, "{ me { id email emailVerified } }", json!({}))
        .await;
    let me = &me.body["data"]["me"];
    let (Some(id), Some(email)) = (me["id"].as_str(), me["email"].as_str()) else {
        return;
    };
    if me["emailVerified"] != true {
        verify_email(app, id.parse().expect("user id"), email).await;
    }
}

/// Signs a new person up and verifies their email, as someone who will
/// create API keys or organizations does first.
pub async fn register_verified(app: &TestApp, email: &str) -> SignedIn {
    let person = register(app, email).await;
    verify_email(app, person.user_id, email).await;
    person
}

/// The id of the personal organization of whoever holds `token`.
pub async fn personal_organization(app: &TestApp, token: &str) -> String {
    let me = app
        .graphql_as(
            token,
            "{ me { memberships { organization { id personal } } } }",
            json!({}),
        )
        .await;
    me.data()["me"]["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .find(|m| m["organization"]["personal"] == true)
        .and_then(|m| m["organization"]["id"].as_str())
        .expect("a personal organization")
        .to_owned()
}
