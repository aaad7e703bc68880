//! Sign-up, sign-in, refresh rotation, sign-out and session management,
//! over HTTP as a client does them.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::harness::{
    GqlResponse, TestApp, TestAppOptions,
    people::{PASSWORD, REGISTER, SignedIn, register},
};

const LOGIN: &str = "mutation ($input: LoginInput!) { login(input: $input) {
    accessToken refreshToken user { id lastLoginAt } } }";
const REFRESH: &str = "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";

async fn login(app: &TestApp, email: &str, password: &str) -> GqlResponse {
    app.graphql(LOGIN, json!({ "input": { "email": email, "password": password } }))
        .await
}

async fn me(app: &TestApp, access: &str) -> GqlResponse {
    app.graphql_as(access, "{ me { id email } }", json!({})).await
}

fn options(vars: &[(&str, &str)]) -> TestAppOptions {
    TestAppOptions {
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn registering_signs_in_and_creates_the_personal_organization() {
    let app = TestApp::spawn().await;
    let response = app
        .graphql(
            REGISTER,
            json!({ "input": { "email": "  Ada@Example.COM ", "password": PASSWORD, "name": " Ada " } }),
        )
        .await;
    let payload = &response.data()["register"];
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["expiresIn"], 900);
    assert_eq!(payload["user"]["email"], "ada@example.com");
    assert_eq!(payload["user"]["name"], "Ada");
    assert_eq!(payload["user"]["emailVerified"], false);
    let signed_in = SignedIn::from(payload);
    assert_eq!(
        me(&app, &signed_in.access).await.data()["me"]["email"],
        "ada@example.com"
    );

    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use tollgate::db::schema::{audit_log, email_outbox, memberships, organizations, plans, subscriptions};
    let mut conn = app.db().await;
    let (role, personal, plan): (String, Option<Uuid>, String) = memberships::table
        .inner_join(organizations::table)
        .inner_join(subscriptions::table.on(subscriptions::organization_id.eq(organizations::id)))
        .inner_join(plans::table.on(plans::id.eq(subscriptions::plan_id)))
        .filter(memberships::user_id.eq(signed_in.user_id))
        .select((memberships::role, organizations::personal_user_id, plans::key))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (role.as_str(), personal, plan.as_str()),
        ("OWNER", Some(signed_in.user_id), "free")
    );
    let actions: Vec<String> = audit_log::table
        .select(audit_log::action)
        .load(&mut conn)
        .await
        .unwrap();
    assert!(actions.contains(&"user.registered".to_owned()), "{actions:?}");
    let outbox: Vec<(String, String)> = email_outbox::table
        .select((email_outbox::to_address, email_outbox::kind))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(outbox, [("ada@example.com".to_owned(), "verify_email".to_owned())]);
}

#[tokio::test]
async fn registration_refuses_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    register(&app, "taken@example.com").await;
    let cases = [
        (
            json!({ "email": "not-an-email", "password": PASSWORD, "name": "A" }),
            "BAD_USER_INPUT",
            Some("email"),
        ),
        (
            json!({ "email": "a@example.com", "password": "short", "name": "A" }),
            "BAD_USER_INPUT",
            Some("password"),
        ),
        (
            json!({ "email": "a@example.com", "password": "iloveyou", "name": "A" }),
            "BAD_USER_INPUT",
            Some("password"),
        ),
        (
            json!({ "email": "a@example.com", "password": "A@Example.com", "name": "A" }),
            "BAD_USER_INPUT",
            Some("password"),
        ),
        (
            json!({ "email": "a@example.com", "password": PASSWORD, "name": "  " }),
            "BAD_USER_INPUT",
            Some("name"),
        ),
        (
            json!({ "email": " TAKEN@example.com", "password": PASSWORD, "name": "A" }),
            "CONFLICT",
            Some("email"),
        ),
    ];
    for (input, code, field) in cases {
        let response = app.graphql(REGISTER, json!({ "input": input })).await;
        assert_eq!(response.error_code(), Some(code), "{input}: {}", response.body);
        assert_eq!(
            response.body["errors"][0]["extensions"]["field"].as_str(),
            field,
            "{input}"
        );
    }
}

#[tokio::test]
async fn closed_registration_refuses_sign_ups() {
    let app = TestApp::spawn_with(options(&[("REGISTRATION_OPEN", "false")])).await;
    let response = app
        .graphql(
            REGISTER,
            json!({ "input": { "email": "a@example.com", "password": PASSWORD, "name": "A" } }),
        )
        .await;
    assert_eq!(response.error_code(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn login_records_the_time_and_wrong_credentials_reveal_nothing() {
    let app = TestApp::spawn().await;
    register(&app, "ada@example.com").await;
    let response = login(&app, "ADA@example.com", PASSWORD).await;
    assert!(response.data()["login"]["user"]["lastLoginAt"].is_string());

    let wrong_password = login(&app, "ada@example.com", "not the password").await;
    let unknown_email = login(&app, "nobody@example.com", "not the password").await;
    assert_eq!(wrong_password.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(
        wrong_password.body["errors"][0]["message"],
        unknown_email.body["errors"][0]["message"]
    );
    assert_eq!(unknown_email.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn twenty_parallel_wrong_passwords_lock_the_email_and_the_lock_ends() {
    let app = TestApp::spawn_with(options(&[("AUTH_RATE_LIMIT_PER_MINUTE", "1000")])).await;
    register(&app, "ada@example.com").await;
    let attempts = (0..20).map(|_| login(&app, "ada@example.com", "wrong password!"));
    let responses = futures_util::future::join_all(attempts).await;
    let codes: Vec<&str> = responses.iter().map(|r| r.error_code().unwrap_or("none")).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == "UNAUTHENTICATED").count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == "ACCOUNT_LOCKED").count(),
        15,
        "{codes:?}"
    );
    let locked = responses
        .iter()
        .find(|r| r.error_code() == Some("ACCOUNT_LOCKED"))
        .unwrap();
    let retry_after = locked.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");

    // Even the right password waits for the lock to end.
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.error_code(),
        Some("ACCOUNT_LOCKED")
    );
    app.clock.advance(chrono::Duration::seconds(901));
    login(&app, "ada@example.com", PASSWORD).await.data();
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_client_with_and_without_redis() {
    for without_redis in [false, true] {
        let app = TestApp::spawn_with(TestAppOptions {
            without_redis,
            ..options(&[("AUTH_RATE_LIMIT_PER_MINUTE", "3")])
        })
        .await;
        for _ in 0..3 {
            assert_eq!(
                login(&app, "x@example.com", "whatever pass").await.error_code(),
                Some("UNAUTHENTICATED")
            );
        }
        let limited = login(&app, "x@example.com", "whatever pass").await;
        assert_eq!(limited.error_code(), Some("RATE_LIMITED"), "redis: {}", !without_redis);
        // Each action has its own bucket.
        for n in 0..3 {
            register(&app, &format!("new{n}@example.com")).await;
        }
        let sign_up = app
            .graphql(
                REGISTER,
                json!({ "input": { "email": "new3@example.com", "password": PASSWORD, "name": "A" } }),
            )
            .await;
        assert_eq!(sign_up.error_code(), Some("RATE_LIMITED"));
        let retry_after = limited.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap();
        assert!((1..=60).contains(&retry_after));
    }
}

#[tokio::test]
async fn a_request_holds_at_most_one_login() {
    let app = TestApp::spawn().await;
    let response = app
        .graphql(
            "mutation { a: login(input: { email: \"a@example.com\", password: \"one password\" }) { accessToken }
                        b: login(input: { email: \"a@example.com\", password: \"two password\" }) { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
}

#[tokio::test]
async fn suspended_accounts_cannot_sign_in() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use tollgate::db::schema::users;
        let mut conn = app.db().await;
        diesel::update(users::table.find(ada.user_id))
            .set(users::suspended_at.eq(chrono::Utc::now()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await.error_code(),
        Some("ACCOUNT_SUSPENDED")
    );
}

#[tokio::test]
async fn refresh_rotates_tolerates_a_race_and_revokes_the_session_on_reuse() {
    let app = TestApp::spawn().await;
    let first = register(&app, "ada@example.com").await;

    let second = app.graphql(REFRESH, json!({ "t": first.refresh })).await;
    let second = &second.data()["refreshSession"];
    let second_refresh = second["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first.refresh);
    me(&app, second["accessToken"].as_str().unwrap()).await.data();

    // A second tab refreshing with the same token inside the grace window
    // gets the current token, not a revocation.
    let racing = app.graphql(REFRESH, json!({ "t": first.refresh })).await;
    assert_eq!(racing.data()["refreshSession"]["refreshToken"], second_refresh.as_str());

    // After the grace window, the rotated token is a stolen one.
    app.clock.advance(chrono::Duration::seconds(11));
    let reused = app.graphql(REFRESH, json!({ "t": first.refresh })).await;
    assert_eq!(reused.error_code(), Some("UNAUTHENTICATED"));
    let family = app.graphql(REFRESH, json!({ "t": second_refresh })).await;
    assert_eq!(
        family.error_code(),
        Some("UNAUTHENTICATED"),
        "the whole session is revoked"
    );
    assert_eq!(me(&app, &first.access).await.error_code(), Some("UNAUTHENTICATED"));

    let forged = app.graphql(REFRESH, json!({ "t": "tgr_AAAA" })).await;
    assert_eq!(forged.error_code(), Some("UNAUTHENTICATED"));
}

/// Polls `me` on `app` until it is refused, for at most a second.
async fn refused_within_a_second(app: &TestApp, access: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if me(app, access).await.error_code() == Some("UNAUTHENTICATED") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn logout_refuses_the_access_token_at_once_on_every_instance() {
    for without_redis in [false, true] {
        let a = TestApp::spawn_with_redis(!without_redis).await;
        let b = a.spawn_sibling().await;
        let ada = register(&a, "ada@example.com").await;
        // Both instances have the session cached before it ends.
        me(&a, &ada.access).await.data();
        me(&b, &ada.access).await.data();

        let logout = a.graphql_as(&ada.access, "mutation { logout }", json!({})).await;
        assert_eq!(logout.data()["logout"], true);
        assert_eq!(me(&a, &ada.access).await.error_code(), Some("UNAUTHENTICATED"));
        assert!(
            refused_within_a_second(&b, &ada.access).await,
            "redis: {}",
            !without_redis
        );
        let refresh = a.graphql(REFRESH, json!({ "t": ada.refresh })).await;
        assert_eq!(refresh.error_code(), Some("UNAUTHENTICATED"));
    }
}

#[tokio::test]
async fn people_see_and_end_their_own_sessions_only() {
    let app = TestApp::spawn().await;
    let laptop = register(&app, "ada@example.com").await;
    let phone = SignedIn::from(&login(&app, "ada@example.com", PASSWORD).await.data()["login"]);
    let tablet = SignedIn::from(&login(&app, "ada@example.com", PASSWORD).await.data()["login"]);
    let mallory = register(&app, "mallory@example.com").await;

    let listed = app
        .graphql_as(
            &phone.access,
            "{ me { sessions { id current userAgent ip } } }",
            json!({}),
        )
        .await;
    let sessions = listed.data()["me"]["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let laptop_session = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let theirs = app
        .graphql_as(
            &mallory.access,
            "mutation ($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": laptop_session }),
        )
        .await;
    assert_eq!(theirs.error_code(), Some("NOT_FOUND"));

    let revoked = app
        .graphql_as(
            &phone.access,
            "mutation ($id: ID!) { revokeSession(id: $id) }",
            json!({ "id": laptop_session }),
        )
        .await;
    assert_eq!(revoked.data()["revokeSession"], true);

    let others = app
        .graphql_as(&phone.access, "mutation { revokeOtherSessions }", json!({}))
        .await;
    assert_eq!(others.data()["revokeOtherSessions"], 1);
    me(&app, &phone.access).await.data();
    let gone = [laptop.access.as_str(), tablet.access.as_str()];
    let mut refused = 0;
    for access in gone {
        if me(&app, access).await.error_code() == Some("UNAUTHENTICATED") {
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
}
