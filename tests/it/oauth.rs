//! Sign-in with identity providers, driven as a browser drives it:
//! `startOAuthLogin`, the authorization URL followed to a local fake (which
//! sends the browser straight back), `GET /oauth/callback`, its Location,
//! then `completeOAuthLogin`. Against a fake GitHub (OAuth 2 and its REST
//! API) and a fake OpenID Connect provider (discovery, rotating JWKS, RS256
//! ID tokens, PKCE checked at the token endpoint).

use chrono::TimeDelta;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};
use tollgate::{
    auth::email_tokens::{self, TokenPurpose},
    db::schema::{api_keys, audit_log},
};
use url::Url;
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, TestAppOptions,
        github_fake::{GithubFake, GithubUser},
        oidc_fake::{Mischief, OidcFake, Person},
        people::{PASSWORD, SignedIn, personal_organization, register, register_verified},
    },
    mfa::{current_code, enable_totp},
    recovery::{key_made_before_the_rule, usage_read},
};

/// The web app's page that finishes sign-ins (an allowed origin).
const RETURN_TO: &str = "http://app.localhost:3000/auth/done";

const START: &str = "mutation ($provider: String!, $back: String!) {
    startOAuthLogin(provider: $provider, redirectUri: $back) { authorizationUrl } }";
const COMPLETE: &str = "mutation ($code: String!) { completeOAuthLogin(code: $code) {
    accessToken refreshToken user { id email emailVerified hasPassword identities { provider email createdAt lastUsedAt } } } }";
const ME: &str = "{ me { id email emailVerified hasPassword identities { provider email } } }";
const UNLINK: &str =
    "mutation ($provider: String!) { unlinkIdentity(provider: $provider) { id identities { provider } } }";
const LOGIN: &str = "mutation ($email: String!, $password: String!) {
    login(input: { email: $email, password: $password }) { accessToken user { id } } }";

/// An app with GitHub and the OIDC provider `acme` (configured as `Acme`).
struct World {
    app: TestApp,
    github: GithubFake,
    oidc: OidcFake,
}

async fn world() -> World {
    let github = GithubFake::start(GithubUser::verified(1001, "octo@example.com")).await;
    let oidc = OidcFake::start(Person::verified("acme|grace", "grace@example.com")).await;
    let mut vars = github.vars();
    vars.extend(oidc.vars("Acme"));
    vars.push(("OIDC_PROVIDERS".to_owned(), "Acme".to_owned()));
    vars.push(("CORS_ORIGINS".to_owned(), "http://app.localhost:3000".to_owned()));
    let app = TestApp::spawn_with(TestAppOptions {
        vars,
        ..Default::default()
    })
    .await;
    World { app, github, oidc }
}

/// A client that, like a test of a browser, looks at each redirect itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("an HTTP client")
}

fn location(response: &reqwest::Response) -> Url {
    let raw = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header");
    Url::parse(raw).expect("an absolute Location")
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn start(app: &TestApp, provider: &str, back: &str, token: Option<&str>) -> GqlResponse {
    let variables = json!({ "provider": provider, "back": back });
    match token {
        Some(token) => app.graphql_as(token, START, variables).await,
        None => app.graphql(START, variables).await,
    }
}

/// `startOAuthLogin`, then the provider's redirect back: the callback URL
/// the browser is sent to (not visited yet).
async fn to_callback(app: &TestApp, provider: &str, token: Option<&str>) -> Url {
    let started = start(app, provider, RETURN_TO, token).await;
    let url = started.data()["startOAuthLogin"]["authorizationUrl"]
        .as_str()
        .expect("authorizationUrl")
        .to_owned();
    let at_provider = browser().get(&url).send().await.expect("the provider answers");
    assert!(at_provider.status().is_redirection(), "{}", at_provider.status());
    let callback = location(&at_provider);
    assert_eq!(
        callback.as_str().split('?').next(),
        Some(app.url("/oauth/callback").as_str())
    );
    callback
}

async fn visit(url: &Url) -> reqwest::Response {
    browser().get(url.as_str()).send().await.expect("the server answers")
}

/// The whole browser trip: where the app sends the browser in the end.
async fn trip(app: &TestApp, provider: &str, token: Option<&str>) -> Url {
    let callback = to_callback(app, provider, token).await;
    let back = visit(&callback).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let back = location(&back);
    assert_eq!(back.as_str().split('?').next(), Some(RETURN_TO));
    back
}

async fn complete(app: &TestApp, code: &str) -> GqlResponse {
    app.graphql(COMPLETE, json!({ "code": code })).await
}

/// Signs in through `provider`; the completed payload.
async fn sign_in(app: &TestApp, provider: &str) -> Value {
    let back = trip(app, provider, None).await;
    assert_eq!(param(&back, "error"), None, "{back}");
    let code = param(&back, "code").expect("?code=");
    complete(app, &code).await.data()["completeOAuthLogin"].clone()
}

fn signed_in(payload: &Value) -> SignedIn {
    SignedIn::from(payload)
}

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

fn providers_of(user: &Value) -> Vec<String> {
    user["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| i["provider"].as_str().expect("provider").to_owned())
        .collect()
}

#[tokio::test]
async fn a_github_user_signs_up_then_signs_in_again_with_the_same_identity() {
    let w = world().await;
    let first = sign_in(&w.app, "github").await;
    let user = &first["user"];
    assert_eq!(user["email"], "octo@example.com");
    assert_eq!(user["emailVerified"], true);
    assert_eq!(user["hasPassword"], false);
    assert_eq!(providers_of(user), ["github"]);
    assert_eq!(user["identities"][0]["email"], "octo@example.com");
    assert_eq!(w.github.scopes_seen(), ["user:email"]);

    let again = sign_in(&w.app, "github").await;
    assert_eq!(again["user"]["id"], user["id"]);
    let person = signed_in(&again);
    let me = w.app.graphql_as(&person.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["id"], user["id"]);

    let logins = audit_metadata(&w.app, person.user_id, "user.login").await;
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[1], json!({ "method": "provider", "provider": "github" }));
    assert_eq!(audit_metadata(&w.app, person.user_id, "identity.linked").await.len(), 1);
    // A password cannot sign in to an account that has none.
    let by_password = w
        .app
        .graphql(LOGIN, json!({ "email": "octo@example.com", "password": PASSWORD }))
        .await;
    assert_eq!(by_password.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn an_oidc_user_signs_up_and_the_one_time_code_works_once() {
    let w = world().await;
    let back = trip(&w.app, "acme", None).await;
    let code = param(&back, "code").expect("?code=");
    assert_eq!(param(&back, "error"), None);
    let first = complete(&w.app, &code).await;
    let user = &first.data()["completeOAuthLogin"]["user"];
    assert_eq!(user["email"], "grace@example.com");
    assert_eq!(user["emailVerified"], true);
    assert_eq!(user["hasPassword"], false);
    assert_eq!(providers_of(user), ["acme"]);
    assert_eq!(w.oidc.token_calls(), 1);

    let replayed = complete(&w.app, &code).await;
    assert_eq!(replayed.error_code(), Some("BAD_USER_INPUT"), "{}", replayed.body);
    assert_eq!(replayed.body["errors"][0]["extensions"]["field"], "code");
    assert!(replayed.body["data"].is_null());
}

#[tokio::test]
async fn the_one_time_code_lasts_a_minute() {
    let w = world().await;
    let back = trip(&w.app, "github", None).await;
    w.app.clock.advance(TimeDelta::seconds(61));
    let late = complete(&w.app, &param(&back, "code").expect("?code=")).await;
    assert_eq!(late.error_code(), Some("BAD_USER_INPUT"), "{}", late.body);
}

#[tokio::test]
async fn a_verified_account_is_linked_by_a_provider_verified_email() {
    let w = world().await;
    let grace = register_verified(&w.app, "grace@example.com").await;
    let payload = sign_in(&w.app, "acme").await;
    assert_eq!(payload["user"]["id"], json!(grace.user_id.to_string()));
    assert_eq!(payload["user"]["hasPassword"], true);
    assert_eq!(providers_of(&payload["user"]), ["acme"]);
    // Her own sessions go on.
    let me = w.app.graphql_as(&grace.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["id"], json!(grace.user_id.to_string()));
    let linked = audit_metadata(&w.app, grace.user_id, "identity.linked").await;
    assert_eq!(linked, [json!({ "provider": "acme", "reason": "verified email" })]);
}

#[tokio::test]
async fn a_squatted_unverified_account_is_taken_over_by_the_addresss_owner() {
    let w = world().await;
    // Someone signed up with the address GitHub says is octo's, and never
    // verified it; the account has a key from before keys needed that.
    let squatter = register(&w.app, "octo@example.com").await;
    let organization = personal_organization(&w.app, &squatter.access).await;
    let (key_id, secret) = key_made_before_the_rule(&w.app, squatter.user_id, &organization).await;
    assert!(usage_read(&w.app, &secret, &organization).await.is_ok());
    // And a second factor of the signer-up's own, which would otherwise
    // stand between the owner and the account.
    enable_totp(&w.app, &squatter).await;

    let payload = sign_in(&w.app, "github").await;
    let user = &payload["user"];
    assert_eq!(user["id"], json!(squatter.user_id.to_string()));
    assert_eq!(user["hasPassword"], false);
    assert_eq!(user["emailVerified"], true);
    assert_eq!(providers_of(user), ["github"]);
    let owner = signed_in(&payload);
    let mfa = w
        .app
        .graphql_as(&owner.access, "{ me { mfaEnabled } }", json!({}))
        .await;
    assert_eq!(mfa.data()["me"]["mfaEnabled"], false);

    // Whatever the signer-up could use has ended.
    let old = w.app.graphql_as(&squatter.access, ME, json!({})).await;
    assert_eq!(old.error_code(), Some("UNAUTHENTICATED"), "{}", old.body);
    let refreshed = w
        .app
        .graphql(
            "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            json!({ "t": squatter.refresh }),
        )
        .await;
    assert_eq!(refreshed.error_code(), Some("UNAUTHENTICATED"));
    assert_eq!(
        usage_read(&w.app, &secret, &organization).await,
        Err("UNAUTHENTICATED".into())
    );
    let revoked: Option<chrono::DateTime<chrono::Utc>> = api_keys::table
        .find(key_id)
        .select(api_keys::revoked_at)
        .first(&mut w.app.db().await)
        .await
        .expect("the key");
    assert!(revoked.is_some());
    let by_password = w
        .app
        .graphql(LOGIN, json!({ "email": "octo@example.com", "password": PASSWORD }))
        .await;
    assert_eq!(by_password.error_code(), Some("UNAUTHENTICATED"));

    let audited = audit_metadata(&w.app, squatter.user_id, "account.taken_over").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["provider"], "github");
    assert_eq!(audited[0]["keysRevoked"], 1);
    assert_eq!(audited[0]["passwordRemoved"], true);
    assert_eq!(audited[0]["mfaDisabled"], true);
    assert!(audited[0]["sessionsEnded"].as_u64().unwrap_or(0) >= 1, "{}", audited[0]);
    let linked = audit_metadata(&w.app, squatter.user_id, "identity.linked").await;
    assert_eq!(linked[0]["reason"], "unverified account taken over");
}

#[tokio::test]
async fn an_unverified_provider_email_never_links_nor_takes_an_address() {
    let w = world().await;
    let octo = register(&w.app, "octo@example.com").await;
    // GitHub: a verified address that is not the primary one does not count.
    w.github.sign_in_as(GithubUser {
        id: 2002,
        login: "mallory".into(),
        emails: vec![
            ("octo@example.com".into(), true, false),
            ("mallory@example.com".into(), false, true),
        ],
    });
    let back = trip(&w.app, "github", None).await;
    assert_eq!(param(&back, "error").as_deref(), Some("email_not_verified"));
    assert_eq!(param(&back, "code"), None);

    // OIDC: email_verified left out means unverified.
    let grace = register_verified(&w.app, "grace@example.com").await;
    w.oidc.sign_in_as(Person {
        email_verified: None,
        ..Person::verified("acme|mallory", "grace@example.com")
    });
    let back = trip(&w.app, "acme", None).await;
    assert_eq!(param(&back, "error").as_deref(), Some("email_not_verified"));
    assert_eq!(param(&back, "code"), None);

    // Both accounts are as they were.
    for (person, email) in [(&octo, "octo@example.com"), (&grace, "grace@example.com")] {
        let me = w.app.graphql_as(&person.access, ME, json!({})).await;
        assert_eq!(me.data()["me"]["identities"], json!([]));
        assert_eq!(me.data()["me"]["hasPassword"], true);
        let login = w
            .app
            .graphql(LOGIN, json!({ "email": email, "password": PASSWORD }))
            .await;
        assert!(login.body["errors"].is_null(), "{}", login.body);
    }

    // A free address may start an account, but it stays unverified.
    w.oidc.sign_in_as(Person {
        email_verified: Some(false),
        ..Person::verified("acme|newcomer", "newcomer@example.com")
    });
    let payload = sign_in(&w.app, "acme").await;
    assert_eq!(payload["user"]["email"], "newcomer@example.com");
    assert_eq!(payload["user"]["emailVerified"], false);
}

#[tokio::test]
async fn a_forged_or_missing_state_gets_a_400_page_and_never_a_code() {
    let w = world().await;
    for query in [
        "?code=abc&state=forged",
        "?code=abc",
        "?error=access_denied&state=forged",
    ] {
        let url = Url::parse(&w.app.url(&format!("/oauth/callback{query}"))).unwrap();
        let answer = visit(&url).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(answer.headers().get(reqwest::header::LOCATION).is_none());
        let page = answer.text().await.unwrap();
        assert!(page.contains("not valid"), "{page}");
    }
}

#[tokio::test]
async fn a_replayed_state_gets_a_400_page() {
    let w = world().await;
    let callback = to_callback(&w.app, "acme", None).await;
    let first = visit(&callback).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert!(param(&location(&first), "code").is_some());
    let again = visit(&callback).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.headers().get(reqwest::header::LOCATION).is_none());
}

#[tokio::test]
async fn a_flow_older_than_ten_minutes_comes_back_expired() {
    let w = world().await;
    let callback = to_callback(&w.app, "github", None).await;
    w.app.clock.advance(TimeDelta::minutes(10) + TimeDelta::seconds(1));
    let answer = visit(&callback).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let back = location(&answer);
    assert_eq!(back.as_str().split('?').next(), Some(RETURN_TO));
    assert_eq!(param(&back, "error").as_deref(), Some("expired"));
    assert_eq!(param(&back, "code"), None);
}

#[tokio::test]
async fn an_id_token_for_another_audience_or_with_a_wrong_nonce_is_refused() {
    let w = world().await;
    for mischief in [
        Mischief {
            audience: Some("someone-else".into()),
            ..Default::default()
        },
        Mischief {
            nonce: Some("not-the-nonce".into()),
            ..Default::default()
        },
    ] {
        w.oidc.misbehave(mischief.clone());
        let back = trip(&w.app, "acme", None).await;
        assert_eq!(
            param(&back, "error").as_deref(),
            Some("exchange_failed"),
            "{mischief:?}"
        );
        assert_eq!(param(&back, "code"), None);
    }
    // Nobody was signed up on the way.
    let users: i64 = tollgate::db::schema::users::table
        .count()
        .get_result(&mut w.app.db().await)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test]
async fn a_rotated_signing_key_still_verifies() {
    let w = world().await;
    let before = sign_in(&w.app, "acme").await;
    w.oidc.rotate_key();
    let jwks: Value = reqwest::get(format!("{}/jwks", w.oidc.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "key2");
    let after = sign_in(&w.app, "acme").await;
    assert_eq!(after["user"]["id"], before["user"]["id"]);
}

#[tokio::test]
async fn denied_at_the_provider_comes_back_as_an_error() {
    let w = world().await;
    w.github.deny();
    let back = trip(&w.app, "github", None).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "code"), None);
    w.oidc.misbehave(Mischief {
        deny: true,
        ..Default::default()
    });
    let back = trip(&w.app, "acme", None).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
}

#[tokio::test]
async fn a_redirect_uri_off_the_app_origins_or_an_unknown_provider_is_refused() {
    let w = world().await;
    for back in [
        "https://evil.example.com/steal",
        "http://app.localhost:3000.evil.com/",
        "javascript:alert(1)",
    ] {
        let refused = start(&w.app, "github", back, None).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{back}");
        assert_eq!(refused.body["errors"][0]["extensions"]["field"], "redirectUri");
    }
    let unknown = start(&w.app, "gitlab", RETURN_TO, None).await;
    assert_eq!(unknown.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(unknown.body["errors"][0]["extensions"]["field"], "provider");
}

#[tokio::test]
async fn a_signed_in_user_links_another_provider_and_cannot_unlink_the_last_way_in() {
    let w = world().await;
    w.oidc
        .sign_in_as(Person::verified("acme|octo", "octo-at-work@example.com"));
    let octo = signed_in(&sign_in(&w.app, "github").await);
    let last = w
        .app
        .graphql_as(&octo.access, UNLINK, json!({ "provider": "github" }))
        .await;
    assert_eq!(last.error_code(), Some("CONFLICT"), "{}", last.body);

    // Linking: another address, linked because octo is signed in.
    let back = trip(&w.app, "acme", Some(&octo.access)).await;
    let linked = complete(&w.app, &param(&back, "code").expect("?code=")).await;
    let user = &linked.data()["completeOAuthLogin"]["user"];
    assert_eq!(user["id"], json!(octo.user_id.to_string()));
    assert_eq!(providers_of(user), ["github", "acme"]);

    let unlinked = w
        .app
        .graphql_as(&octo.access, UNLINK, json!({ "provider": "github" }))
        .await;
    assert_eq!(providers_of(&unlinked.data()["unlinkIdentity"]), ["acme"]);
    let last = w
        .app
        .graphql_as(&octo.access, UNLINK, json!({ "provider": "acme" }))
        .await;
    assert_eq!(last.error_code(), Some("CONFLICT"), "{}", last.body);
    let gone = w
        .app
        .graphql_as(&octo.access, UNLINK, json!({ "provider": "github" }))
        .await;
    assert_eq!(gone.error_code(), Some("NOT_FOUND"));
    let audited = audit_metadata(&w.app, octo.user_id, "identity.unlinked").await;
    assert_eq!(audited, [json!({ "provider": "github" })]);

    // A provider account linked to someone else is not moved by linking.
    let other = register_verified(&w.app, "someone@example.com").await;
    let back = trip(&w.app, "acme", Some(&other.access)).await;
    assert_eq!(param(&back, "error").as_deref(), Some("identity_in_use"));
}

#[tokio::test]
async fn delete_account_without_a_password_says_to_set_one_first() {
    let w = world().await;
    let octo = signed_in(&sign_in(&w.app, "github").await);
    let refused = w
        .app
        .graphql_as(
            &octo.access,
            "mutation { deleteAccount(password: \"anything at all\") }",
            json!({}),
        )
        .await;
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    let error = &refused.body["errors"][0];
    assert_eq!(error["extensions"]["field"], "password");
    assert!(
        error["message"].as_str().unwrap_or_default().contains("set one first"),
        "{error}"
    );
}

#[tokio::test]
async fn a_totp_user_gets_mfa_required_then_verify_mfa_gives_the_session() {
    let w = world().await;
    let grace = register_verified(&w.app, "grace@example.com").await;
    let (secret, _) = enable_totp(&w.app, &grace).await;

    let back = trip(&w.app, "acme", None).await;
    let answer = complete(&w.app, &param(&back, "code").expect("?code=")).await;
    assert_eq!(answer.error_code(), Some("MFA_REQUIRED"), "{}", answer.body);
    assert!(answer.body["data"].is_null(), "no session before the second factor");
    let token = answer.body["errors"][0]["extensions"]["mfaToken"]
        .as_str()
        .expect("mfaToken")
        .to_owned();

    let verified = w
        .app
        .graphql(
            "mutation ($token: String!, $code: String!) { verifyMfa(mfaToken: $token, code: $code) { accessToken user { id } } }",
            json!({ "token": token, "code": current_code(&w.app, &secret) }),
        )
        .await;
    assert_eq!(
        verified.data()["verifyMfa"]["user"]["id"],
        json!(grace.user_id.to_string())
    );
    let logins = audit_metadata(&w.app, grace.user_id, "user.login").await;
    let last = logins.last().expect("a login");
    assert_eq!(last["method"], "provider");
    assert_eq!(last["provider"], "acme");
    assert_eq!(last["mfa"], true);
}

#[tokio::test]
async fn client_config_and_the_device_page_offer_each_provider() {
    let w = world().await;
    let config = w.app.graphql("{ clientConfig { authProviders } }", json!({})).await;
    assert_eq!(
        config.data()["clientConfig"]["authProviders"],
        json!(["password", "device", "github", "acme"])
    );
    let page = w.app.http().get(w.app.url("/device")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains(r#"data-provider="github">Continue with GitHub"#),
        "{page}"
    );
    assert!(page.contains(r#"data-provider="acme">Continue with acme"#), "{page}");
    assert!(page.contains("startOAuthLogin") && page.contains("completeOAuthLogin"));

    let plain = TestApp::spawn().await;
    let config = plain.graphql("{ clientConfig { authProviders } }", json!({})).await;
    assert_eq!(
        config.data()["clientConfig"]["authProviders"],
        json!(["password", "device"])
    );
    let page = plain
        .http()
        .get(plain.url("/device"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("data-provider="));
}

#[tokio::test]
async fn a_provider_account_gets_a_password_through_the_reset_flow() {
    let w = world().await;
    let octo = signed_in(&sign_in(&w.app, "github").await);
    let token = {
        let mut conn = w.app.db().await;
        email_tokens::create(
            &mut conn,
            octo.user_id,
            "octo@example.com",
            TokenPurpose::ResetPassword,
            w.app.state.now(),
        )
        .await
        .expect("a reset token")
    };
    let reset = w
        .app
        .graphql(
            "mutation ($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }",
            json!({ "t": token, "p": PASSWORD }),
        )
        .await;
    assert_eq!(reset.data()["resetPassword"], true);
    let login = w
        .app
        .graphql(LOGIN, json!({ "email": "octo@example.com", "password": PASSWORD }))
        .await;
    let access = login.data()["login"]["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_owned();
    let me = w.app.graphql_as(&access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["hasPassword"], true);
    assert_eq!(providers_of(&me.data()["me"]), ["github"]);
    // With a password, the provider can go.
    let unlinked = w.app.graphql_as(&access, UNLINK, json!({ "provider": "github" })).await;
    assert_eq!(unlinked.data()["unlinkIdentity"]["identities"], json!([]));
}

#[tokio::test]
async fn closed_registration_signs_in_known_people_but_signs_up_nobody() {
    let w = world().await;
    let grace = register_verified(&w.app, "grace@example.com").await;
    let closed = w.app.spawn_sibling_with(&[("REGISTRATION_OPEN", Some("false"))]).await;
    let back = trip(&closed, "github", None).await;
    assert_eq!(param(&back, "error").as_deref(), Some("registration_closed"));
    assert_eq!(param(&back, "code"), None);
    let payload = sign_in(&closed, "acme").await;
    assert_eq!(payload["user"]["id"], json!(grace.user_id.to_string()));
}
