//! Email verification, password reset and password change, following the
//! links of emails received by a real (fake) SMTP server.

use serde_json::json;

use crate::harness::{
    GqlResponse, TestApp, TestAppOptions,
    people::{PASSWORD, SignedIn, register},
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
