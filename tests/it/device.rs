//! Device login (RFC 8628-style) over HTTP: a device starts and polls, a
//! signed-in person approves or denies, and the built-in pages.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{
    GqlResponse, TestApp, TestAppOptions,
    people::{SignedIn, register},
};

const ALPHABET: &str = "BCDFGHJKLMNPQRSTVWXZ";

const START: &str = "mutation ($name: String) { startDeviceLogin(clientName: $name) {
    deviceCode userCode verificationUri verificationUriComplete expiresIn interval } }";
const POLL: &str = "mutation ($code: String!) { pollDeviceLogin(deviceCode: $code) {
    accessToken refreshToken tokenType expiresIn user { id } } }";
const APPROVE: &str = "mutation ($code: String!) { approveDeviceLogin(userCode: $code) }";
const DENY: &str = "mutation ($code: String!) { denyDeviceLogin(userCode: $code) }";
const PENDING: &str = "query ($code: String!) { deviceLogin(userCode: $code) {
    userCode clientName clientIp createdAt expiresAt } }";

async fn start(app: &TestApp, client_name: Option<&str>) -> Value {
    app.graphql(START, json!({ "name": client_name })).await.data()["startDeviceLogin"].clone()
}

async fn poll(app: &TestApp, device_code: &str) -> GqlResponse {
    app.graphql(POLL, json!({ "code": device_code })).await
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("{key} in {value}"))
}

fn is_user_code(code: &str) -> bool {
    let (first, second) = code.split_once('-').unwrap_or_default();
    [first, second]
        .iter()
        .all(|half| half.len() == 4 && half.chars().all(|c| ALPHABET.contains(c)))
}

#[tokio::test]
async fn a_device_signs_in_once_after_a_person_approves() {
    let app = TestApp::spawn().await;
    let SignedIn {
        access: person,
        user_id,
        ..
    } = register(&app, "grace@example.com").await;

    let started = start(&app, Some("  VS Code  ")).await;
    let user_code = str_of(&started, "userCode").to_owned();
    let device_code = str_of(&started, "deviceCode").to_owned();
    assert!(is_user_code(&user_code), "{user_code}");
    assert_eq!(device_code.len(), 43, "32 bytes, base64url without padding");
    assert_eq!(started["verificationUri"], app.url("/device"));
    assert_eq!(
        started["verificationUriComplete"],
        format!("{}?code={user_code}", app.url("/device"))
    );
    assert_eq!(started["expiresIn"], 600);
    assert_eq!(started["interval"], 5);

    assert_eq!(
        poll(&app, &device_code).await.error_code(),
        Some("AUTHORIZATION_PENDING")
    );
    assert_eq!(poll(&app, &device_code).await.error_code(), Some("SLOW_DOWN"));
    app.clock.advance(chrono::Duration::seconds(5));
    assert_eq!(
        poll(&app, &device_code).await.error_code(),
        Some("AUTHORIZATION_PENDING")
    );

    // Only signed-in people see or answer a request.
    let anonymous = app.graphql(APPROVE, json!({ "code": user_code })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
    let anonymous = app.graphql(PENDING, json!({ "code": user_code })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));

    // The person sees who asks, whatever case and spacing they type.
    let typed = user_code.to_lowercase().replace('-', " ");
    let shown = app.graphql_as(&person, PENDING, json!({ "code": typed })).await;
    let shown = &shown.data()["deviceLogin"];
    assert_eq!(shown["userCode"], user_code.as_str());
    assert_eq!(shown["clientName"], "VS Code");
    assert_eq!(shown["clientIp"], "127.0.0.1");

    let approved = app.graphql_as(&person, APPROVE, json!({ "code": typed })).await;
    assert_eq!(approved.data()["approveDeviceLogin"], true);
    // Answered once: neither a second approval nor a denial finds it.
    let again = app.graphql_as(&person, APPROVE, json!({ "code": user_code })).await;
    assert_eq!(again.error_code(), Some("NOT_FOUND"));
    let deny = app.graphql_as(&person, DENY, json!({ "code": user_code })).await;
    assert_eq!(deny.error_code(), Some("NOT_FOUND"));
    let gone = app.graphql_as(&person, PENDING, json!({ "code": user_code })).await;
    assert_eq!(gone.data()["deviceLogin"], Value::Null);

    // Two racing polls: exactly one gets the tokens, the other finds the code spent.
    app.clock.advance(chrono::Duration::seconds(5));
    let (first, second) = tokio::join!(poll(&app, &device_code), poll(&app, &device_code));
    let (won, lost) = if first.body["errors"].is_null() {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(lost.error_code(), Some("EXPIRED_TOKEN"), "{}", lost.body);
    let payload = &won.data()["pollDeviceLogin"];
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["user"]["id"], user_id.to_string());
    let device = str_of(payload, "accessToken");

    let me = app
        .graphql_as(device, "{ me { id sessions { id current } } }", json!({}))
        .await;
    let me = &me.data()["me"];
    assert_eq!(me["id"], user_id.to_string());
    let sessions = me["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "the registration's and the device's: {sessions:?}");
    let current = sessions
        .iter()
        .find(|s| s["current"] == true)
        .expect("the device's session");
    let session_id: Uuid = str_of(current, "id").parse().expect("session id");

    // Used: the code is dead, now and later.
    assert_eq!(poll(&app, &device_code).await.error_code(), Some("EXPIRED_TOKEN"));
    app.clock.advance(chrono::Duration::seconds(5));
    assert_eq!(poll(&app, &device_code).await.error_code(), Some("EXPIRED_TOKEN"));

    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use tollgate::db::schema::{audit_log, sessions};
    let mut conn = app.db().await;
    let client_name: Option<String> = sessions::table
        .find(session_id)
        .select(sessions::client_name)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(client_name.as_deref(), Some("VS Code"));
    let approvals: Vec<(Option<Uuid>, Option<String>)> = audit_log::table
        .filter(audit_log::action.eq("device.approved"))
        .select((audit_log::actor_id, audit_log::target_type))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(approvals, [(Some(user_id), Some("device_login".to_owned()))]);
}

#[tokio::test]
async fn a_denied_request_gets_access_denied_and_bad_codes_are_refused() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![(
            "DEVICE_VERIFICATION_URL".to_owned(),
            "https://app.example.com/activate".to_owned(),
        )],
        ..Default::default()
    })
    .await;
    let SignedIn { access: person, .. } = register(&app, "ada@example.com").await;

    let started = start(&app, None).await;
    assert_eq!(started["verificationUri"], "https://app.example.com/activate");
    let user_code = str_of(&started, "userCode");
    let device_code = str_of(&started, "deviceCode");
    let shown = app.graphql_as(&person, PENDING, json!({ "code": user_code })).await;
    assert_eq!(shown.data()["deviceLogin"]["clientName"], Value::Null);

    let denied = app.graphql_as(&person, DENY, json!({ "code": user_code })).await;
    assert_eq!(denied.data()["denyDeviceLogin"], true);
    assert_eq!(poll(&app, device_code).await.error_code(), Some("ACCESS_DENIED"));
    let late = app.graphql_as(&person, APPROVE, json!({ "code": user_code })).await;
    assert_eq!(late.error_code(), Some("NOT_FOUND"));

    // Not a code at all (vowels, wrong length): BAD_USER_INPUT naming it.
    for typed in ["ABCD-EFGH", "BCDF-GHJ", ""] {
        let refused = app.graphql_as(&person, APPROVE, json!({ "code": typed })).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{typed:?}");
        assert_eq!(refused.body["errors"][0]["extensions"]["field"], "userCode");
    }
    // A well-formed code nobody issued.
    let unknown = if user_code == "BBBB-BBBB" {
        "CCCC-CCCC"
    } else {
        "BBBB-BBBB"
    };
    let refused = app.graphql_as(&person, DENY, json!({ "code": unknown })).await;
    assert_eq!(refused.error_code(), Some("NOT_FOUND"));
    // A device code nobody issued looks like an expired one: start over.
    assert_eq!(
        poll(&app, "not-a-device-code").await.error_code(),
        Some("EXPIRED_TOKEN")
    );

    let too_long = app.graphql(START, json!({ "name": "x".repeat(101) })).await;
    assert_eq!(too_long.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(too_long.body["errors"][0]["extensions"]["field"], "clientName");
}

#[tokio::test]
async fn codes_expire_after_ten_minutes() {
    let app = TestApp::spawn().await;
    let SignedIn { access: person, .. } = register(&app, "alan@example.com").await;
    let started = start(&app, Some("cli")).await;
    let user_code = str_of(&started, "userCode");
    let device_code = str_of(&started, "deviceCode");

    app.clock.advance(chrono::Duration::seconds(601));
    assert_eq!(poll(&app, device_code).await.error_code(), Some("EXPIRED_TOKEN"));
    let shown = app.graphql_as(&person, PENDING, json!({ "code": user_code })).await;
    assert_eq!(shown.data()["deviceLogin"], Value::Null);
    let late = app.graphql_as(&person, APPROVE, json!({ "code": user_code })).await;
    assert_eq!(late.error_code(), Some("NOT_FOUND"));
}

#[tokio::test]
async fn the_built_in_pages_are_html_that_cannot_be_framed() {
    let app = TestApp::spawn().await;
    for path in [
        "/device?code=ZXZX-QRQR",
        "/verify-email?token=abc",
        "/reset-password?token=abc",
        "/accept-invitation?token=abc",
    ] {
        let response = app.http().get(app.url(path)).send().await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with("text/html"), "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        let html = response.text().await.expect("body");
        assert!(html.contains("fetch(\"graphql\""), "{path} talks to the API");
        // Nothing from the query string is written into the page.
        assert!(!html.contains("ZXZX-QRQR") && !html.contains("token=abc"), "{path}");
    }

    let config = app.graphql("{ clientConfig { authProviders } }", json!({})).await;
    assert_eq!(
        config.data()["clientConfig"]["authProviders"],
        json!(["password", "device"])
    );
}

/// Sends `query` as `token` through the trusted proxy, for a client at
/// `address`.
async fn from_address(app: &TestApp, address: &str, token: &str, query: &str, code: &str) -> GqlResponse {
    let response = app
        .http()
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .header("x-forwarded-for", address)
        .json(&json!({ "query": query, "variables": { "code": code } }))
        .send()
        .await
        .unwrap();
    GqlResponse::from(response).await
}

fn assert_rate_limited(response: &GqlResponse) {
    assert_eq!(response.error_code(), Some("RATE_LIMITED"), "{}", response.body);
    let retry_after = response.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

/// User codes have about 35 bits: looking one up, approving and denying
/// are guesses, counted per client address and per signed-in user.
#[tokio::test]
async fn using_user_codes_is_rate_limited_per_address_and_per_user() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("AUTH_RATE_LIMIT_PER_MINUTE".to_owned(), "3".to_owned()),
            ("TRUSTED_PROXIES".to_owned(), "127.0.0.1".to_owned()),
        ],
        ..Default::default()
    })
    .await;
    let ada = register(&app, "ada@example.com").await.access;
    let bob = register(&app, "bob@example.com").await.access;
    let guess = "BCDF-GHJK";

    // One address, two people: the address's bucket holds three uses.
    let shown = from_address(&app, "198.51.100.1", &ada, PENDING, guess).await;
    assert_eq!(shown.data()["deviceLogin"], Value::Null);
    let approve = from_address(&app, "198.51.100.1", &ada, APPROVE, guess).await;
    assert_eq!(approve.error_code(), Some("NOT_FOUND"));
    let deny = from_address(&app, "198.51.100.1", &bob, DENY, guess).await;
    assert_eq!(deny.error_code(), Some("NOT_FOUND"));
    assert_rate_limited(&from_address(&app, "198.51.100.1", &bob, PENDING, guess).await);

    // One person, many addresses: ada's own bucket holds three uses too.
    let third = from_address(&app, "198.51.100.2", &ada, PENDING, guess).await;
    assert_eq!(third.data()["deviceLogin"], Value::Null);
    assert_rate_limited(&from_address(&app, "198.51.100.3", &ada, APPROVE, guess).await);

    // Devices starting and polling keep their own bucket.
    let started = app.graphql(START, json!({ "name": "cli" })).await;
    assert!(is_user_code(str_of(&started.data()["startDeviceLogin"], "userCode")));
}

/// Aliases cannot multiply guesses past the limit: one user code per
/// request, whichever of the three fields carries it.
#[tokio::test]
async fn a_request_holds_at_most_one_user_code() {
    let app = TestApp::spawn().await;
    let SignedIn { access: person, .. } = register(&app, "ada@example.com").await;
    let two_lookups =
        "{ a: deviceLogin(userCode: \"BCDF-GHJK\") { userCode } b: deviceLogin(userCode: \"BCDF-GHJL\") { userCode } }";
    let approve_and_deny =
        "mutation { approveDeviceLogin(userCode: \"BCDF-GHJK\") denyDeviceLogin(userCode: \"BCDF-GHJL\") }";
    for query in [two_lookups, approve_and_deny] {
        let refused = app.graphql_as(&person, query, json!({})).await;
        assert_eq!(
            refused.error_code(),
            Some("BAD_USER_INPUT"),
            "{query}: {}",
            refused.body
        );
        assert!(refused.body["data"].is_null());
    }
    let one = app
        .graphql_as(
            &person,
            "{ deviceLogin(userCode: \"BCDF-GHJK\") { userCode } }",
            json!({}),
        )
        .await;
    assert_eq!(one.data()["deviceLogin"], Value::Null);
}
