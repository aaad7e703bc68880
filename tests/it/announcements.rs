//! Revocations and role changes reach every instance through the
//! database, whatever bus each instance uses and whether it delivers.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate::auth::roles::OrgRole;

use crate::{
    harness::{GqlResponse, TestApp},
    usage::{create_key, mid_month, team},
};

/// How soon an instance must refuse what another one revoked.
const AT_ONCE: Duration = Duration::from_secs(1);

const RECORD: &str = "mutation { recordUsage(input: { model: \"gpt-4o\", promptTokens: 10, completionTokens: 1 }) {
    event { id } } }";
const AUTHORIZE: &str = "query { authorizeUsage(model: \"gpt-4o\") { allowed } }";
const ME: &str = "{ me { id } }";

/// The first error code, or "OK".
fn outcome(response: &GqlResponse) -> &str {
    response.error_code().unwrap_or("OK")
}

/// Asks `ask` until it answers `expected`; every answer asked for later
/// than [`AT_ONCE`] after the start must be `expected`.
async fn answers_within_a_second<F, Fut>(what: &str, expected: &str, ask: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = GqlResponse>,
{
    let started = Instant::now();
    loop {
        let asked_at = started.elapsed();
        let response = ask().await;
        if outcome(&response) == expected {
            return;
        }
        assert!(
            asked_at < AT_ONCE,
            "{what}: still {} {asked_at:?} later: {}",
            outcome(&response),
            response.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A key of a new team's owner, known to (cached by) both instances.
async fn key_known_to_both(a: &TestApp, b: &TestApp, domain: &str) -> (String, String, crate::usage::Team) {
    a.clock.set(mid_month());
    b.clock.set(mid_month());
    let team = team(a, domain, &[]).await;
    let (key_id, secret) = create_key(a, &team.owner.access, &team.id, json!({})).await;
    for app in [a, b] {
        assert_eq!(outcome(&app.graphql_as(&secret, RECORD, json!({})).await), "OK");
        assert_eq!(outcome(&app.graphql_as(&team.owner.access, ME, json!({})).await), "OK");
    }
    (key_id, secret, team)
}

async fn revoke(app: &TestApp, token: &str, key_id: &str) {
    let revoked = app
        .graphql_as(
            token,
            "mutation ($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": key_id }),
        )
        .await;
    assert!(revoked.data()["revokeApiKey"]["revokedAt"].is_string());
}

/// The sibling listens on another Redis channel: nothing one instance
/// publishes on its bus reaches the other (as when publishing fails).
/// Before announcements went through the database, the sibling kept
/// trusting the revoked key and the ended session until its cache's TTL.
#[tokio::test]
async fn a_sibling_whose_bus_hears_nothing_refuses_a_revoked_key_and_an_ended_session_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a
        .spawn_sibling_with(&[("REDIS_KEY_PREFIX", Some(&format!("{}-deaf:", a.database)))])
        .await;
    let (key_id, secret, team) = key_known_to_both(&a, &b, "deaf-bus.test").await;

    revoke(&a, &team.owner.access, &key_id).await;
    assert_eq!(
        outcome(&a.graphql_as(&secret, RECORD, json!({})).await),
        "UNAUTHENTICATED"
    );
    answers_within_a_second("revoked key on the sibling", "UNAUTHENTICATED", || {
        b.graphql_as(&secret, RECORD, json!({}))
    })
    .await;

    let logout = a.graphql_as(&team.owner.access, "mutation { logout }", json!({})).await;
    assert_eq!(logout.data()["logout"], true);
    answers_within_a_second("ended session on the sibling", "UNAUTHENTICATED", || {
        b.graphql_as(&team.owner.access, ME, json!({}))
    })
    .await;
}

/// One instance on Redis, one on PostgreSQL LISTEN/NOTIFY, one database:
/// each refuses at once what the other revoked.
#[tokio::test]
async fn instances_on_different_buses_refuse_what_the_other_revoked() {
    let with_redis = TestApp::spawn().await;
    let without_redis = with_redis.spawn_sibling_with(&[("REDIS_URL", None)]).await;
    for (revoking, other, domain) in [
        (&with_redis, &without_redis, "redis-first.test"),
        (&without_redis, &with_redis, "postgres-first.test"),
    ] {
        let (key_id, secret, team) = key_known_to_both(revoking, other, domain).await;
        revoke(revoking, &team.owner.access, &key_id).await;
        answers_within_a_second(&format!("revoked key ({domain})"), "UNAUTHENTICATED", || {
            other.graphql_as(&secret, RECORD, json!({}))
        })
        .await;
    }
}

async fn set_role(app: &TestApp, token: &str, organization: &str, user: &str, role: &str) {
    let changed = app
        .graphql_as(
            token,
            "mutation ($org: ID!, $user: ID!, $role: OrgRole) {
                updateMember(organizationId: $org, userId: $user, role: $role) { role } }",
            json!({ "org": organization, "user": user, "role": role }),
        )
        .await;
    assert_eq!(changed.data()["updateMember"]["role"], role);
}

/// A key never does more than its creator's role allows now: a MEMBER
/// demoted to VIEWER no longer reports or authorizes usage through a key
/// made earlier, on this instance and on its sibling, and gets it back
/// when promoted again. Before, the key kept its creator's old powers.
#[tokio::test]
async fn a_key_does_no_more_than_its_creators_current_role_on_every_instance() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    a.clock.set(mid_month());
    b.clock.set(mid_month());
    let team = team(&a, "demoted.test", &[("member", OrgRole::Member)]).await;
    let member = &team.people[0];
    let scopes = json!({ "scopes": ["USAGE_WRITE", "USAGE_READ"] });
    let (_, secret) = create_key(&a, &member.access, &team.id, scopes).await;
    let use_key = async |app: &TestApp| -> (String, String) {
        let recorded = app.graphql_as(&secret, RECORD, json!({})).await;
        let authorized = app.graphql_as(&secret, AUTHORIZE, json!({})).await;
        (outcome(&recorded).to_owned(), outcome(&authorized).to_owned())
    };
    let allowed = ("OK".to_owned(), "OK".to_owned());
    let forbidden = ("FORBIDDEN".to_owned(), "FORBIDDEN".to_owned());
    for app in [&a, &b] {
        assert_eq!(use_key(app).await, allowed);
    }

    let user = member.user_id.to_string();
    set_role(&a, &team.owner.access, &team.id, &user, "VIEWER").await;
    assert_eq!(use_key(&a).await, forbidden, "on the instance that demoted");
    answers_within_a_second("a demoted creator's key on the sibling", "FORBIDDEN", || {
        b.graphql_as(&secret, RECORD, json!({}))
    })
    .await;
    assert_eq!(use_key(&b).await, forbidden);
    // Reading stays: a VIEWER may read the organization's usage.
    let read = b
        .graphql_as(
            &secret,
            "query ($org: ID!) { organization(id: $org) { quota { tokensUsed } } }",
            json!({ "org": team.id }),
        )
        .await;
    assert_eq!(outcome(&read), "OK", "{}", read.body);

    set_role(&a, &team.owner.access, &team.id, &user, "MEMBER").await;
    assert_eq!(use_key(&a).await, allowed, "promoted again");
    answers_within_a_second("a promoted creator's key on the sibling", "OK", || {
        b.graphql_as(&secret, RECORD, json!({}))
    })
    .await;
}
