//! Email verification, password reset and password change, following the
//! links of emails received by a real (fake) SMTP server.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{
    auth::keys::{model::ApiKeyRow, scope::ApiKeyScope, secret},
    db::schema::audit_log,
};
use uuid::Uuid;

use crate::harness::{
    GqlResponse, TestApp, TestAppOptions,
    people::{PASSWORD, SignedIn, personal_organization, register},
    smtp::{FakeSmtp, ReceivedMessage},
};

const APP_URL: &str = "https://app.example.com";
const NEW_PASSWORD: &str = "a brand new long passphrase";

async fn app_mailing_to(smtp: &FakeSmtp) -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("SMTP_URL".into(), format!("smtp://127.0.0.1:{}", smtp.port())),
            ("APP_URL".into(), APP_URL.into()),
        ],
        ..Default::default()
    })
    .await
}

async fn login(app: &TestApp, password: &str) -> GqlResponse {
    app.graphql(
        "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }",
        json!({ "input": { "email": "ada@example.com", "password": password } }),
    )
    .await
}

/// The token of the `APP_URL/<path>?token=` link in the plain-text part.
fn link_token(message: &ReceivedMessage, path: &str) -> String {
    let text = message.part("text/plain").expect("a plain-text part").body;
    let prefix = format!("{APP_URL}/{path}?token=");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"))
        + prefix.len();
    let token: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    percent_encoding::percent_decode_str(&token)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[tokio::test]
async fn the_emailed_verification_link_verifies_once() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let SignedIn { access, .. } = register(&app, "ada@example.com").await;
    let message = smtp.next_message().await;
    assert_eq!(message.to, ["ada@example.com"]);
    let token = link_token(&message, "verify-email");

    let verified = app
        .graphql(
            "mutation ($t: String!) { verifyEmail(token: $t) { email emailVerified } }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(verified.data()["verifyEmail"]["emailVerified"], true);
    let again = app
        .graphql(
            "mutation ($t: String!) { verifyEmail(token: $t) { id } }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(again.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(again.body["errors"][0]["extensions"]["field"], "token");

    let resend = app
        .graphql_as(&access, "mutation { resendVerificationEmail }", json!({}))
        .await;
    assert_eq!(
        resend.data()["resendVerificationEmail"],
        false,
        "already verified: nothing to send"
    );
}

#[tokio::test]
async fn a_resent_verification_email_carries_a_fresh_working_link() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let SignedIn { access, .. } = register(&app, "ada@example.com").await;
    let first = link_token(&smtp.next_message().await, "verify-email");
    let resend = app
        .graphql_as(&access, "mutation { resendVerificationEmail }", json!({}))
        .await;
    assert_eq!(resend.data()["resendVerificationEmail"], true);
    let second = link_token(&smtp.next_message().await, "verify-email");
    assert_ne!(first, second);
    let verified = app
        .graphql(
            "mutation ($t: String!) { verifyEmail(token: $t) { emailVerified } }",
            json!({ "t": second }),
        )
        .await;
    assert_eq!(verified.data()["verifyEmail"]["emailVerified"], true);
}

#[tokio::test]
async fn a_password_reset_link_sets_a_new_password_and_ends_every_session() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let SignedIn { access, refresh, .. } = register(&app, "ada@example.com").await;
    smtp.next_message().await; // the verification email

    let unknown = app
        .graphql(
            "mutation { requestPasswordReset(email: \"nobody@example.com\") }",
            json!({}),
        )
        .await;
    assert_eq!(unknown.data()["requestPasswordReset"], true);
    let known = app
        .graphql(
            "mutation { requestPasswordReset(email: \" ADA@example.com\") }",
            json!({}),
        )
        .await;
    assert_eq!(known.data()["requestPasswordReset"], true);
    let message = smtp.next_message().await;
    assert_eq!(message.to, ["ada@example.com"], "only the real account gets an email");
    let token = link_token(&message, "reset-password");

    let reset = "mutation ($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
    let weak = app.graphql(reset, json!({ "t": token, "p": "password1" })).await;
    assert_eq!(
        weak.body["errors"][0]["extensions"]["field"], "newPassword",
        "{}",
        weak.body
    );
    let done = app.graphql(reset, json!({ "t": token, "p": NEW_PASSWORD })).await;
    assert_eq!(done.data()["resetPassword"], true);

    assert_eq!(
        app.graphql_as(&access, "{ me { id } }", json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );
    let refreshed = app
        .graphql(
            "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(refreshed.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(login(&app, PASSWORD).await.error_code(), Some("UNAUTHENTICATED"));
    login(&app, NEW_PASSWORD).await.data();
    let reused = app
        .graphql(reset, json!({ "t": token, "p": "yet another long passphrase" }))
        .await;
    assert_eq!(reused.error_code(), Some("BAD_USER_INPUT"));

    let notice = smtp.next_message().await;
    assert!(
        notice
            .part("text/plain")
            .unwrap()
            .body
            .to_lowercase()
            .contains("password")
    );
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let SignedIn { access: laptop, .. } = register(&app, "ada@example.com").await;
    let phone = login(&app, PASSWORD).await.data()["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let change = "mutation ($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";

    let wrong = app
        .graphql_as(&laptop, change, json!({ "c": "not my password", "n": NEW_PASSWORD }))
        .await;
    assert_eq!(wrong.body["errors"][0]["extensions"]["field"], "currentPassword");
    let changed = app
        .graphql_as(&laptop, change, json!({ "c": PASSWORD, "n": NEW_PASSWORD }))
        .await;
    assert_eq!(changed.data()["changePassword"], true);

    app.graphql_as(&laptop, "{ me { id } }", json!({})).await.data();
    assert_eq!(
        app.graphql_as(&phone, "{ me { id } }", json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );
    login(&app, NEW_PASSWORD).await.data();
}

#[tokio::test]
async fn a_stolen_access_token_cannot_be_used_to_guess_the_password() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let SignedIn { access, .. } = register(&app, "ada@example.com").await;
    let change = "mutation ($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";

    let aliased = app
        .graphql_as(
            &access,
            "mutation { a: changePassword(currentPassword: \"guess one\", newPassword: \"a brand new long passphrase\")
                        b: changePassword(currentPassword: \"guess two\", newPassword: \"a brand new long passphrase\") }",
            json!({}),
        )
        .await;
    assert_eq!(aliased.error_code(), Some("BAD_USER_INPUT"), "{}", aliased.body);

    for n in 0..5 {
        let guess = json!({ "c": format!("guess number {n}"), "n": NEW_PASSWORD });
        assert_eq!(
            app.graphql_as(&access, change, guess).await.error_code(),
            Some("BAD_USER_INPUT")
        );
    }
    let locked = app
        .graphql_as(&access, change, json!({ "c": PASSWORD, "n": NEW_PASSWORD }))
        .await;
    assert_eq!(
        locked.error_code(),
        Some("ACCOUNT_LOCKED"),
        "even the right password waits: {}",
        locked.body
    );
}

#[tokio::test]
async fn sent_emails_do_not_keep_their_links_in_the_database() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use tollgate::db::schema::email_outbox;

    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    register(&app, "ada@example.com").await;
    smtp.next_message().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut conn = app.db().await;
        let (status, text, html): (String, String, String) = email_outbox::table
            .select((email_outbox::status, email_outbox::text_body, email_outbox::html_body))
            .first(&mut conn)
            .await
            .unwrap();
        if status == "SENT" {
            assert!(text.is_empty() && html.is_empty(), "bodies kept: {text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not marked sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

const CREATE_KEY: &str = "mutation ($org: ID!) { createApiKey(input: { organizationId: $org, name: \"ci\", scopes: [USAGE_READ] }) { secret } }";
const CREATE_ORG: &str = "mutation { createOrganization(input: { name: \"Side project\" }) { id } }";
const REFRESH: &str = "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken } }";

/// Whoever reads ada@example.com's mail sets NEW_PASSWORD through the
/// emailed reset link.
async fn reset_by_email(app: &TestApp, smtp: &FakeSmtp) {
    app.graphql(
        "mutation { requestPasswordReset(email: \"ada@example.com\") }",
        json!({}),
    )
    .await
    .data();
    let token = link_token(&smtp.next_message().await, "reset-password");
    let reset = app
        .graphql(
            "mutation ($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }",
            json!({ "t": token, "p": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(reset.data()["resetPassword"], true);
}

/// `(code, message)` of the first error.
fn refusal(response: &GqlResponse) -> (Option<&str>, Option<&str>) {
    (response.error_code(), response.body["errors"][0]["message"].as_str())
}

/// What the holder of an API key reads of its organization's usage: the
/// quota, or the error code.
pub(crate) async fn usage_read(app: &TestApp, secret: &str, organization: &str) -> Result<Value, String> {
    let read = app
        .graphql_as(
            secret,
            "query ($id: ID!) { organization(id: $id) { quota { tokensUsed } } }",
            json!({ "id": organization }),
        )
        .await;
    match read.error_code() {
        None => Ok(read.body["data"]["organization"]["quota"].clone()),
        Some(code) => Err(code.to_owned()),
    }
}

/// A USAGE_READ key of `organization` made by `creator` straight in the
/// database: a key an unverified account made before such accounts were
/// refused keys. Returns its id and secret.
pub(crate) async fn key_made_before_the_rule(app: &TestApp, creator: Uuid, organization: &str) -> (Uuid, String) {
    let minted = secret::generate();
    let row = ApiKeyRow {
        id: Uuid::now_v7(),
        organization_id: organization.parse().unwrap(),
        created_by: creator,
        name: "scraper".into(),
        prefix: minted.prefix.clone(),
        secret_hash: minted.hash.clone(),
        scopes: vec![Some(ApiKeyScope::UsageRead)],
        allowed_models: None,
        allowed_ips: None,
        token_limit: None,
        created_at: app.state.now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    };
    let mut conn = app.db().await;
    tollgate::auth::keys::model::insert(&mut conn, &row)
        .await
        .expect("inserting a key");
    (row.id, minted.secret)
}

#[tokio::test]
async fn a_squatter_on_someone_elses_address_loses_every_key_when_the_owner_resets_the_password() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let sibling = app.spawn_sibling().await;
    // Someone signs up with Ada's address; the verification email goes to
    // Ada, so the account stays unverified.
    let squatter = register(&app, "ada@example.com").await;
    smtp.next_message().await;
    let organization = personal_organization(&app, &squatter.access).await;

    let key = app
        .graphql_as(&squatter.access, CREATE_KEY, json!({ "org": organization }))
        .await;
    assert_eq!(
        refusal(&key),
        (Some("FORBIDDEN"), Some("verify your email first")),
        "{}",
        key.body
    );
    let team = app.graphql_as(&squatter.access, CREATE_ORG, json!({})).await;
    assert_eq!(
        refusal(&team),
        (Some("FORBIDDEN"), Some("verify your email first")),
        "{}",
        team.body
    );

    let (key_id, secret) = key_made_before_the_rule(&app, squatter.user_id, &organization).await;
    assert!(usage_read(&app, &secret, &organization).await.is_ok());
    // The other instance has the key cached when the takeover happens.
    assert!(usage_read(&sibling, &secret, &organization).await.is_ok());

    // Ada takes her address back.
    reset_by_email(&app, &smtp).await;

    assert_eq!(
        usage_read(&app, &secret, &organization).await,
        Err("UNAUTHENTICATED".into())
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while usage_read(&sibling, &secret, &organization).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the other instance still takes the key after a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.graphql_as(&squatter.access, "{ me { id } }", json!({}))
            .await
            .error_code(),
        Some("UNAUTHENTICATED")
    );
    let revoked: Vec<(Option<Uuid>, Option<String>, Value)> = audit_log::table
        .filter(audit_log::action.eq("api_key.revoked"))
        .select((audit_log::organization_id, audit_log::target_id, audit_log::metadata))
        .load(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].0, Some(organization.parse().unwrap()));
    assert_eq!(revoked[0].1, Some(key_id.to_string()));
    assert_eq!(revoked[0].2["reason"], "password reset of an unverified account");

    // Ada, whose address the reset proved, gets keys of her own.
    let ada = login(&app, NEW_PASSWORD).await;
    let ada = ada.data()["login"]["accessToken"].as_str().unwrap().to_owned();
    let own = app.graphql_as(&ada, CREATE_KEY, json!({ "org": organization })).await;
    let own = own.data()["createApiKey"]["secret"].as_str().unwrap().to_owned();
    assert!(usage_read(&app, &own, &organization).await.is_ok());
}

#[tokio::test]
async fn a_verified_accounts_reset_keeps_its_keys() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let ada = register(&app, "ada@example.com").await;
    let verify = link_token(&smtp.next_message().await, "verify-email");
    app.graphql(
        "mutation ($t: String!) { verifyEmail(token: $t) { id } }",
        json!({ "t": verify }),
    )
    .await
    .data();
    let organization = personal_organization(&app, &ada.access).await;
    let created = app
        .graphql_as(&ada.access, CREATE_KEY, json!({ "org": organization }))
        .await;
    let secret = created.data()["createApiKey"]["secret"].as_str().unwrap().to_owned();

    reset_by_email(&app, &smtp).await;
    assert!(
        usage_read(&app, &secret, &organization).await.is_ok(),
        "the owner's own key stays"
    );
}

#[tokio::test]
async fn verifying_the_email_keeps_the_session_and_unlocks_keys_and_organizations() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp).await;
    let SignedIn { access, refresh, .. } = register(&app, "ada@example.com").await;
    let token = link_token(&smtp.next_message().await, "verify-email");
    let organization = personal_organization(&app, &access).await;
    assert_eq!(
        app.graphql_as(&access, CREATE_ORG, json!({})).await.error_code(),
        Some("FORBIDDEN")
    );

    app.graphql(
        "mutation ($t: String!) { verifyEmail(token: $t) { id } }",
        json!({ "t": token }),
    )
    .await
    .data();
    assert_eq!(
        app.graphql_as(&access, "{ me { emailVerified } }", json!({}))
            .await
            .data()["me"]["emailVerified"],
        true
    );
    app.graphql(REFRESH, json!({ "t": refresh })).await.data();
    app.graphql_as(&access, CREATE_ORG, json!({})).await.data();
    app.graphql_as(&access, CREATE_KEY, json!({ "org": organization }))
        .await
        .data();
}
