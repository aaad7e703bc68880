//! Two-factor authentication over HTTP: enrolling TOTP, recovery codes,
//! login's second step (MFA_REQUIRED, then verifyMfa), replays, drift,
//! the lockout under parallel wrong codes, the mfaToken's limits, and
//! REQUIRE_MFA_FOR_STAFF. Codes come from totp-rs and the enrollment's
//! secret, as an authenticator app computes them; time moves with the
//! app's clock, never by sleeping.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::{prelude::*, sql_types::Text};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{
    auth::{
        email_tokens::{self, TokenPurpose},
        roles::OrgRole,
        users::Role,
    },
    db::schema::audit_log,
};
use totp_rs::{Builder, Secret};
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, TestAppOptions, create_user,
        people::{PASSWORD, SignedIn, register, register_verified},
    },
    organizations::{add_member, create_org, field},
};

const ENROLL: &str = "mutation { enrollTotp { secret otpauthUri qrCodeSvg } }";
const CONFIRM: &str = "mutation ($code: String!) { confirmTotp(code: $code) }";
const DISABLE: &str = "mutation ($code: String!) { disableTotp(code: $code) }";
const REGENERATE: &str = "mutation ($code: String!) { regenerateRecoveryCodes(code: $code) }";
const LOGIN: &str = "mutation ($email: String!, $password: String!) {
    login(input: { email: $email, password: $password }) { accessToken user { id } } }";
const VERIFY: &str = "mutation ($token: String!, $code: String!) { verifyMfa(mfaToken: $token, code: $code) {
    accessToken refreshToken tokenType user { id email mfaEnabled } } }";
const ME: &str = "{ me { id mfaEnabled } }";

/// The code an authenticator app shows at `at` for a base32 secret.
fn totp_code(secret: &str, at: DateTime<Utc>) -> String {
    let secret = Secret::try_from_base32(secret).expect("a base32 secret");
    let generator = Builder::new().with_secret(secret).build().expect("a TOTP generator");
    generator
        .generate(u64::try_from(at.timestamp()).expect("after 1970"))
        .to_string()
}

/// Sets the app's clock two seconds into a time step of its own (the next
/// but one), so that codes computed now stay current while the test runs.
fn fresh_step(app: &TestApp) -> DateTime<Utc> {
    let step = app.state.now().timestamp() / 30 + 2;
    let at = DateTime::from_timestamp(step * 30 + 2, 0).expect("a time");
    app.clock.set(at);
    at
}

/// Moves the app's clock into the next time step, whose codes are new.
fn next_step(app: &TestApp) {
    app.clock.advance(TimeDelta::seconds(30));
}

/// The current code for `secret` by the app's clock.
pub(crate) fn current_code(app: &TestApp, secret: &str) -> String {
    totp_code(secret, app.state.now())
}

/// Turns TOTP on for `person`; returns the secret and the recovery codes.
pub(crate) async fn enable_totp(app: &TestApp, person: &SignedIn) -> (String, Vec<String>) {
    fresh_step(app);
    let enrolled = app.graphql_as(&person.access, ENROLL, json!({})).await;
    let secret = enrolled.data()["enrollTotp"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let confirmed = app
        .graphql_as(&person.access, CONFIRM, json!({ "code": current_code(app, &secret) }))
        .await;
    let codes = strings(&confirmed.data()["confirmTotp"]);
    // The confirming code's step is spent: later codes need the next one.
    next_step(app);
    (secret, codes)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

async fn login(app: &TestApp, email: &str, password: &str) -> GqlResponse {
    app.graphql(LOGIN, json!({ "email": email, "password": password }))
        .await
}

/// Logs in with the right password; returns the mfaToken of MFA_REQUIRED.
async fn mfa_token(app: &TestApp, email: &str) -> String {
    let answer = login(app, email, PASSWORD).await;
    assert_eq!(answer.error_code(), Some("MFA_REQUIRED"), "{}", answer.body);
    assert!(
        answer.body["data"].is_null(),
        "no session before the second factor: {}",
        answer.body
    );
    answer.body["errors"][0]["extensions"]["mfaToken"]
        .as_str()
        .expect("extensions.mfaToken")
        .to_owned()
}

async fn verify(app: &TestApp, token: &str, code: &str) -> GqlResponse {
    app.graphql(VERIFY, json!({ "token": token, "code": code })).await
}

/// The metadata of `action` entries by `user_id`, oldest first.
async fn audit_metadata(app: &TestApp, user_id: Uuid, action: &str) -> Vec<Value> {
    audit_log::table
        .filter(audit_log::actor_id.eq(user_id))
        .filter(audit_log::action.eq(action.to_owned()))
        .order((audit_log::created_at, audit_log::id))
        .select(audit_log::metadata)
        .load(&mut app.db().await)
        .await
        .expect("audit entries")
}

#[tokio::test]
async fn enrolling_confirming_regenerating_and_disabling_totp() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["mfaEnabled"], false);

    fresh_step(&app);
    let first = app.graphql_as(&ada.access, ENROLL, json!({})).await;
    let first = &first.data()["enrollTotp"];
    let first_secret = first["secret"].as_str().unwrap().to_owned();
    assert_eq!(first_secret.len(), 32, "160 bits in base32");
    let uri = first["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Tollgate:ada%40example.com?"), "{uri}");
    assert!(uri.contains(&format!("secret={first_secret}")) && uri.contains("issuer=Tollgate"));
    let svg = first["qrCodeSvg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));

    // A second enrollment replaces the first; neither changes anything yet.
    let second = app.graphql_as(&ada.access, ENROLL, json!({})).await;
    let secret = second.data()["enrollTotp"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(secret, first_secret);
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["mfaEnabled"], false);
    let login_now = login(&app, "ada@example.com", PASSWORD).await;
    assert!(login_now.data()["login"]["accessToken"].is_string());
    let stale = app
        .graphql_as(
            &ada.access,
            CONFIRM,
            json!({ "code": current_code(&app, &first_secret) }),
        )
        .await;
    assert_eq!(stale.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&stale), Some("code"));

    let confirmed = app
        .graphql_as(&ada.access, CONFIRM, json!({ "code": current_code(&app, &secret) }))
        .await;
    let codes = strings(&confirmed.data()["confirmTotp"]);
    assert_eq!(codes.len(), 10);
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    for code in &codes {
        assert!(
            code.len() == 11 && code.as_bytes()[5] == b'-',
            "recovery codes look like XXXXX-XXXXX: {code}"
        );
    }
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["mfaEnabled"], true);
    assert_eq!(audit_metadata(&app, ada.user_id, "mfa.enabled").await.len(), 1);
    let again = app.graphql_as(&ada.access, ENROLL, json!({})).await;
    assert_eq!(again.error_code(), Some("CONFLICT"));

    // New recovery codes need a code of a new step; the old ones then stop.
    let replayed = app
        .graphql_as(&ada.access, REGENERATE, json!({ "code": current_code(&app, &secret) }))
        .await;
    assert_eq!(
        replayed.error_code(),
        Some("BAD_USER_INPUT"),
        "the confirming code is spent"
    );
    next_step(&app);
    let with_recovery_code = app
        .graphql_as(&ada.access, REGENERATE, json!({ "code": &codes[0] }))
        .await;
    assert_eq!(with_recovery_code.error_code(), Some("BAD_USER_INPUT"));
    let regenerated = app
        .graphql_as(&ada.access, REGENERATE, json!({ "code": current_code(&app, &secret) }))
        .await;
    let fresh = strings(&regenerated.data()["regenerateRecoveryCodes"]);
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|code| !codes.contains(code)));
    let old = app.graphql_as(&ada.access, DISABLE, json!({ "code": &codes[1] })).await;
    assert_eq!(
        old.error_code(),
        Some("BAD_USER_INPUT"),
        "replaced codes no longer work"
    );

    // A recovery code turns TOTP off (typed in lower case, without its dash).
    let typed = fresh[3].replace('-', "").to_lowercase();
    let disabled = app.graphql_as(&ada.access, DISABLE, json!({ "code": typed })).await;
    assert_eq!(disabled.data()["disableTotp"], true);
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["mfaEnabled"], false);
    assert_eq!(
        audit_metadata(&app, ada.user_id, "mfa.disabled").await,
        vec![json!({ "with": "recovery_code" })]
    );
    assert_eq!(
        audit_metadata(&app, ada.user_id, "mfa.recovery_code_used").await.len(),
        1
    );
    let off = app.graphql_as(&ada.access, DISABLE, json!({ "code": "123456" })).await;
    assert_eq!(off.data()["disableTotp"], false, "nothing to turn off");
    let signed_in = login(&app, "ada@example.com", PASSWORD).await;
    assert!(signed_in.data()["login"]["accessToken"].is_string());
    // Logins say how they happened, and that no second factor was used.
    let logins = audit_metadata(&app, ada.user_id, "user.login").await;
    assert_eq!(logins.last(), Some(&json!({ "method": "password" })));
}

#[tokio::test]
async fn login_with_totp_on_needs_verify_mfa_which_gives_the_session() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;

    let token = mfa_token(&app, "ada@example.com").await;
    let wrong = verify(&app, &token, "000000").await;
    let wrong = if wrong.error_code() == Some("BAD_USER_INPUT") {
        wrong
    } else {
        // 000000 may be the real code once in a million.
        verify(&app, &token, "999999").await
    };
    assert_eq!(wrong.error_code(), Some("BAD_USER_INPUT"), "{}", wrong.body);
    assert_eq!(field(&wrong), Some("code"));

    // A wrong code does not spend the token; the right one does.
    let code = current_code(&app, &secret);
    let verified = verify(&app, &token, &code).await;
    let payload = &verified.data()["verifyMfa"];
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["user"]["email"], "ada@example.com");
    assert_eq!(payload["user"]["mfaEnabled"], true);
    let access = payload["accessToken"].as_str().unwrap();
    let me = app.graphql_as(access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["id"], ada.user_id.to_string());
    let logins = audit_metadata(&app, ada.user_id, "user.login").await;
    assert_eq!(
        logins.last(),
        Some(&json!({ "method": "password", "mfa": true, "secondFactor": "totp" }))
    );
    let failures = audit_metadata(&app, ada.user_id, "user.login_failed").await;
    assert_eq!(failures, vec![json!({ "method": "password", "mfa": true })]);

    // Single use: the spent token does not sign in again.
    next_step(&app);
    let spent = verify(&app, &token, &current_code(&app, &secret)).await;
    assert_eq!(spent.error_code(), Some("UNAUTHENTICATED"));

    // A code is accepted once: replayed in a new sign-in, it is refused.
    app.clock.advance(TimeDelta::seconds(-30));
    let token = mfa_token(&app, "ada@example.com").await;
    let replayed = verify(&app, &token, &code).await;
    assert_eq!(replayed.error_code(), Some("BAD_USER_INPUT"), "{}", replayed.body);
    next_step(&app);
    let fresh = verify(&app, &token, &current_code(&app, &secret)).await;
    assert!(fresh.data()["verifyMfa"]["accessToken"].is_string());

    // A made-up token is nobody's sign-in.
    let forged = verify(&app, "not-a-token", &current_code(&app, &secret)).await;
    assert_eq!(forged.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn each_recovery_code_signs_in_once() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let (_, codes) = enable_totp(&app, &ada).await;

    let token = mfa_token(&app, "ada@example.com").await;
    let signed_in = verify(&app, &token, &codes[0]).await;
    assert!(signed_in.data()["verifyMfa"]["accessToken"].is_string());
    assert_eq!(
        audit_metadata(&app, ada.user_id, "mfa.recovery_code_used").await.len(),
        1
    );
    let logins = audit_metadata(&app, ada.user_id, "user.login").await;
    assert_eq!(logins.last().unwrap()["secondFactor"], "recovery_code");

    let token = mfa_token(&app, "ada@example.com").await;
    let used = verify(&app, &token, &codes[0]).await;
    assert_eq!(
        used.error_code(),
        Some("BAD_USER_INPUT"),
        "a used recovery code is refused"
    );
    let next = verify(&app, &token, &codes[1]).await;
    assert!(next.data()["verifyMfa"]["accessToken"].is_string());
}

#[tokio::test]
async fn one_step_of_clock_drift_is_accepted_and_two_are_not() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    app.clock.advance(TimeDelta::seconds(300));
    let now = app.state.now();

    let token = mfa_token(&app, "ada@example.com").await;
    for shift in [-60, 60] {
        let far = verify(&app, &token, &totp_code(&secret, now + TimeDelta::seconds(shift))).await;
        assert_eq!(far.error_code(), Some("BAD_USER_INPUT"), "{shift} s off is refused");
    }
    let behind = verify(&app, &token, &totp_code(&secret, now - TimeDelta::seconds(30))).await;
    assert!(
        behind.data()["verifyMfa"]["accessToken"].is_string(),
        "a phone 30 s behind"
    );

    let token = mfa_token(&app, "ada@example.com").await;
    let ahead = verify(&app, &token, &totp_code(&secret, now + TimeDelta::seconds(30))).await;
    assert!(
        ahead.data()["verifyMfa"]["accessToken"].is_string(),
        "a phone 30 s ahead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_codes_lock_the_account_even_twenty_at_once() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let (secret, codes) = enable_totp(&app, &ada).await;

    // The password counts as one attempt of five (LOCKOUT_THRESHOLD), and
    // a right password does not clear the count while a code is due.
    let token = mfa_token(&app, "ada@example.com").await;
    let right = current_code(&app, &secret);
    let wrong = if right == "123456" { "654321" } else { "123456" };
    let guesses: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, token) = (app.http().clone(), app.url("/graphql"), token.clone());
            tokio::spawn(async move {
                let body = json!({ "query": VERIFY, "variables": { "token": token, "code": wrong } });
                let response = client.post(url).json(&body).send().await.expect("POST /graphql");
                GqlResponse::from(response).await.error_code().map(str::to_owned)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for guess in guesses {
        answers.push(guess.await.expect("guess task").expect("an error"));
    }
    let checked = answers.iter().filter(|code| *code == "BAD_USER_INPUT").count();
    let locked = answers.iter().filter(|code| *code == "ACCOUNT_LOCKED").count();
    assert_eq!((checked, locked), (4, 16), "{answers:?}");

    // Locked: the right code, a recovery code and the password all wait.
    let refused = verify(&app, &token, &right).await;
    assert_eq!(refused.error_code(), Some("ACCOUNT_LOCKED"));
    assert!(refused.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() > 0);
    assert_eq!(
        verify(&app, &token, &codes[0]).await.error_code(),
        Some("ACCOUNT_LOCKED")
    );
    let password = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(password.error_code(), Some("ACCOUNT_LOCKED"));

    // Once the lock has passed (and with it the token's five minutes), a
    // new sign-in works.
    app.clock.advance(TimeDelta::seconds(901));
    let expired = verify(&app, &token, &current_code(&app, &secret)).await;
    assert_eq!(expired.error_code(), Some("UNAUTHENTICATED"));
    let token = mfa_token(&app, "ada@example.com").await;
    let signed_in = verify(&app, &token, &current_code(&app, &secret)).await;
    assert!(signed_in.data()["verifyMfa"]["accessToken"].is_string());
}

#[tokio::test]
async fn an_mfa_token_lasts_five_minutes_and_signs_in_only_its_own_user() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let (ada_secret, _) = enable_totp(&app, &ada).await;
    let (bob_secret, bob_codes) = enable_totp(&app, &bob).await;

    // Bob's codes are wrong codes for Ada's sign-in.
    let token = mfa_token(&app, "ada@example.com").await;
    let bobs_code = verify(&app, &token, &current_code(&app, &bob_secret)).await;
    assert_eq!(bobs_code.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(
        verify(&app, &token, &bob_codes[0]).await.error_code(),
        Some("BAD_USER_INPUT")
    );
    let ada_in = verify(&app, &token, &current_code(&app, &ada_secret)).await;
    assert_eq!(ada_in.data()["verifyMfa"]["user"]["id"], ada.user_id.to_string());

    // Just within five minutes it works; just after, it does not.
    next_step(&app);
    let token = mfa_token(&app, "ada@example.com").await;
    app.clock.advance(TimeDelta::seconds(290));
    let in_time = verify(&app, &token, &current_code(&app, &ada_secret)).await;
    assert!(in_time.data()["verifyMfa"]["accessToken"].is_string());
    next_step(&app);
    let token = mfa_token(&app, "ada@example.com").await;
    app.clock.advance(TimeDelta::seconds(301));
    let late = verify(&app, &token, &current_code(&app, &ada_secret)).await;
    assert_eq!(late.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn refresh_does_not_ask_again_and_a_password_reset_keeps_totp_on() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    let token = mfa_token(&app, "ada@example.com").await;
    let session = verify(&app, &token, &current_code(&app, &secret)).await;
    let refresh_token = session.data()["verifyMfa"]["refreshToken"].as_str().unwrap().to_owned();

    let refreshed = app
        .graphql(
            "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken user { mfaEnabled } } }",
            json!({ "t": refresh_token }),
        )
        .await;
    assert!(refreshed.data()["refreshSession"]["accessToken"].is_string());

    let reset_token = email_tokens::create(
        &mut *app.db().await,
        ada.user_id,
        "ada@example.com",
        TokenPurpose::ResetPassword,
        app.state.now(),
    )
    .await
    .unwrap();
    let new_password = "a brand new long passphrase";
    let reset = app
        .graphql(
            "mutation ($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }",
            json!({ "t": reset_token, "p": new_password }),
        )
        .await;
    assert_eq!(reset.data()["resetPassword"], true);
    let answer = login(&app, "ada@example.com", new_password).await;
    assert_eq!(answer.error_code(), Some("MFA_REQUIRED"), "{}", answer.body);
}

#[tokio::test]
async fn device_login_needs_no_second_prompt_after_a_signed_in_approval() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    let token = mfa_token(&app, "ada@example.com").await;
    let session = verify(&app, &token, &current_code(&app, &secret)).await;
    let access = session.data()["verifyMfa"]["accessToken"].as_str().unwrap().to_owned();

    let started = app
        .graphql(
            "mutation { startDeviceLogin(clientName: \"VS Code\") { deviceCode userCode } }",
            json!({}),
        )
        .await;
    let started = &started.data()["startDeviceLogin"];
    let approved = app
        .graphql_as(
            &access,
            "mutation ($c: String!) { approveDeviceLogin(userCode: $c) }",
            json!({ "c": started["userCode"] }),
        )
        .await;
    assert_eq!(approved.data()["approveDeviceLogin"], true);
    let polled = app
        .graphql(
            "mutation ($c: String!) { pollDeviceLogin(deviceCode: $c) { accessToken user { id } } }",
            json!({ "c": started["deviceCode"] }),
        )
        .await;
    assert_eq!(polled.data()["pollDeviceLogin"]["user"]["id"], ada.user_id.to_string());
    let logins = audit_metadata(&app, ada.user_id, "user.login").await;
    assert_eq!(logins.last().unwrap()["method"], "device");
}

#[tokio::test]
async fn who_sees_mfa_enabled() {
    let app = TestApp::spawn().await;
    let ada = register_verified(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let team = create_org(&app, &ada.access, "Team").await;
    add_member(&app, team, bob.user_id, OrgRole::Member).await;
    let members = "query ($id: ID!) { organization(id: $id) { members { user { email mfaEnabled } } } }";
    let seen = app.graphql_as(&bob.access, members, json!({ "id": team })).await;
    assert_eq!(seen.error_code(), Some("FORBIDDEN"), "{}", seen.body);
    let users = seen.body["data"]["organization"]["members"].as_array().unwrap();
    for member in users {
        let own = member["user"]["email"] == "bob@example.com";
        assert_eq!(member["user"]["mfaEnabled"].is_null(), !own, "{member}");
    }

    let support = create_user(&app, "support@staff.test", Role::Support).await;
    let support = app.token_for(support).await;
    let user = "query ($id: ID!) { user(id: $id) { mfaEnabled } }";
    let seen = app.graphql_as(&support, user, json!({ "id": ada.user_id })).await;
    assert_eq!(seen.data()["user"]["mfaEnabled"], false);
}

#[tokio::test]
async fn staff_without_totp_are_told_to_enroll_when_it_is_required() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("REQUIRE_MFA_FOR_STAFF".into(), "true".into())],
        ..Default::default()
    })
    .await;
    let ada = register_verified(&app, "ada@example.com").await;
    let team = create_org(&app, &ada.access, "Team").await;
    let admin_id = create_user(&app, "admin@staff.test", Role::Admin).await;
    let admin = SignedIn {
        access: app.token_for(admin_id).await,
        refresh: String::new(),
        user_id: admin_id,
    };
    let users = "{ users(first: 5) { totalCount } }";
    let organization = "query ($id: ID!) { organization(id: $id) { name } }";
    let other_user = "query ($id: ID!) { user(id: $id) { email } }";

    let refused = app.graphql_as(&admin.access, users, json!({})).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("enroll TOTP"), "{message}");
    let refused = app.graphql_as(&admin.access, "{ stats { users } }", json!({})).await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("enroll TOTP")
    );
    let refused = app
        .graphql_as(
            &admin.access,
            "mutation ($id: ID!) { suspendUser(userId: $id, reason: \"spam\") { id } }",
            json!({ "id": ada.user_id }),
        )
        .await;
    assert_eq!(refused.error_code(), Some("FORBIDDEN"));
    // Lookups that answer null for what the caller may not see do so.
    let hidden = app
        .graphql_as(&admin.access, other_user, json!({ "id": ada.user_id }))
        .await;
    assert!(hidden.data()["user"].is_null(), "no staff reads before TOTP");
    let hidden = app.graphql_as(&admin.access, organization, json!({ "id": team })).await;
    assert!(hidden.data()["organization"].is_null(), "no staff reads before TOTP");
    // Their own account works as anyone's does, enrollment included.
    let me = app.graphql_as(&admin.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["mfaEnabled"], false);

    enable_totp(&app, &admin).await;
    let listed = app.graphql_as(&admin.access, users, json!({})).await;
    assert!(listed.data()["users"]["totalCount"].as_i64().unwrap() >= 2);
    let read = app.graphql_as(&admin.access, organization, json!({ "id": team })).await;
    assert_eq!(read.data()["organization"]["name"], "Team");
    let seen = app
        .graphql_as(&admin.access, other_user, json!({ "id": ada.user_id }))
        .await;
    assert_eq!(seen.data()["user"]["email"], "ada@example.com");
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    table_name: String,
}

/// How many rows of every table hold `needle` in their text form (case
/// ignored).
async fn rows_holding(app: &TestApp, needle: &str) -> Vec<(String, i64)> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let mut conn = app.db().await;
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let query = format!(
            "SELECT count(*) AS count FROM \"{0}\" t WHERE t::text ILIKE '%' || $1 || '%'",
            table.table_name
        );
        let counted: Count = diesel::sql_query(query)
            .bind::<Text, _>(needle)
            .get_result(&mut conn)
            .await
            .unwrap();
        if counted.count > 0 {
            found.push((table.table_name, counted.count));
        }
    }
    found
}

#[tokio::test]
async fn secrets_and_recovery_codes_are_nowhere_in_the_database_in_the_clear() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    fresh_step(&app);
    let enrolled = app.graphql_as(&ada.access, ENROLL, json!({})).await;
    let pending = enrolled.data()["enrollTotp"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(rows_holding(&app, &pending).await, vec![], "the pending secret");
    app.graphql_as(&ada.access, ENROLL, json!({})).await;
    let (secret, codes) = enable_totp(&app, &ada).await;
    let raw = Secret::try_from_base32(&secret).unwrap();
    let raw_hex: String = raw.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(rows_holding(&app, &secret).await, vec![], "the secret");
    assert_eq!(rows_holding(&app, &raw_hex).await, vec![], "the secret's bytes");
    for code in &codes {
        assert_eq!(rows_holding(&app, code).await, vec![], "{code}");
        assert_eq!(rows_holding(&app, &code.replace('-', "")).await, vec![], "{code}");
    }
    let token = mfa_token(&app, "ada@example.com").await;
    assert_eq!(rows_holding(&app, &token).await, vec![], "the mfaToken");
}

#[tokio::test]
async fn production_without_secrets_key_refuses_to_start_over_stored_totp_secrets() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("APP_ENV".into(), "production".into()),
            // 32 bytes of 9, in base64.
            (
                "SECRETS_KEY".into(),
                "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=".into(),
            ),
        ],
        ..Default::default()
    })
    .await;
    let ada = register(&app, "ada@example.com").await;
    enable_totp(&app, &ada).await;
    let error = app
        .try_spawn_sibling_with(&[("SECRETS_KEY", None)])
        .await
        .err()
        .expect("a production start without SECRETS_KEY over a stored TOTP secret fails");
    let error = format!("{error:#}");
    assert!(error.contains("SECRETS_KEY") && error.contains("TOTP"), "{error}");
}
