//! Live usage over websockets: events reach subscribers on every instance,
//! and subscriptions end when their caller loses access.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use tollgate::auth::roles::OrgRole;

use crate::harness::{
    TestApp, TestAppOptions,
    people::{SignedIn, register, register_verified, verify_caller},
    ws::{Socket, close_code, connect_as, receive, receive_within, send},
};
use crate::organizations::add_member;

const SUBSCRIBE: &str = "subscription ($org: ID!) { usageUpdated(organizationId: $org) {
    event { id model totalTokens organization { id } } quota { tokensUsed } thresholdCrossed } }";

const RECORD: &str = "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { event { id } } }";

/// The id of the person's personal organization.
async fn personal_organization(app: &TestApp, person: &SignedIn) -> String {
    crate::harness::people::personal_organization(app, &person.access).await
}

/// Records one event as `token` and returns its id.
async fn record(app: &TestApp, token: &str, organization: &str, tokens: i64) -> String {
    let response = app
        .graphql_as(
            token,
            RECORD,
            json!({ "input": { "organizationId": organization, "model": "gpt-4o", "promptTokens": tokens, "completionTokens": 1 } }),
        )
        .await;
    response.data()["recordUsage"]["event"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Starts a usageUpdated subscription in either protocol.
async fn subscribe(socket: &mut Socket, legacy: bool, id: &str, organization: &str) {
    let kind = if legacy { "start" } else { "subscribe" };
    send(
        socket,
        json!({ "type": kind, "id": id, "payload": { "query": SUBSCRIBE, "variables": { "org": organization } } }),
    )
    .await;
}

/// Records on `recorder` until the subscriber has seen an update (the
/// subscription becomes active asynchronously), and returns the update
/// with the ids recorded so far.
async fn first_update(
    recorder: &TestApp,
    token: &str,
    organization: &str,
    socket: &mut Socket,
) -> (Value, Vec<String>) {
    let mut recorded = Vec::new();
    for _ in 0..40 {
        recorded.push(record(recorder, token, organization, 10).await);
        if let Some(message) = receive_within(socket, Duration::from_millis(250)).await {
            return (message, recorded);
        }
    }
    panic!("no update reached the subscriber");
}

async fn events_cross_instances(use_redis: bool, legacy: bool) {
    let recorder = TestApp::spawn_with_redis(use_redis).await;
    let watcher = recorder.spawn_sibling().await;
    let person = register(&recorder, "live@example.com").await;
    let organization = personal_organization(&recorder, &person).await;
    let protocol = if legacy { "graphql-ws" } else { "graphql-transport-ws" };
    let mut socket = connect_as(&watcher, protocol, &person.access).await;
    subscribe(&mut socket, legacy, "usage", &organization).await;

    let (message, recorded) = first_update(&recorder, &person.access, &organization, &mut socket).await;
    assert_eq!(message["type"], if legacy { "data" } else { "next" });
    assert_eq!(message["id"], "usage");
    let update = &message["payload"]["data"]["usageUpdated"];
    assert!(recorded.contains(&update["event"]["id"].as_str().unwrap().to_owned()));
    assert_eq!(update["event"]["organization"]["id"], organization.as_str());
    assert_eq!(update["event"]["model"], "gpt-4o");
    assert_eq!(update["event"]["totalTokens"], 11);

    // From now on every event arrives, in order, with the quota after it.
    let next = record(&recorder, &person.access, &organization, 5).await;
    let mut seen = Vec::new();
    loop {
        let update = receive(&mut socket).await["payload"]["data"]["usageUpdated"].clone();
        seen.push(update["event"]["id"].as_str().unwrap().to_owned());
        if seen.last() == Some(&next) {
            assert_eq!(update["quota"]["tokensUsed"], 11 * recorded.len() as i64 + 6);
            break;
        }
    }
    recorder.shutdown().await;
    watcher.shutdown().await;
}

#[tokio::test]
async fn an_event_recorded_on_one_instance_reaches_a_subscriber_on_another_through_redis() {
    events_cross_instances(true, false).await;
}

#[tokio::test]
async fn without_redis_postgresql_notify_carries_the_events() {
    events_cross_instances(false, false).await;
}

#[tokio::test]
async fn the_legacy_protocol_receives_updates_too() {
    events_cross_instances(true, true).await;
}

#[tokio::test]
async fn an_outsider_subscription_is_refused_with_an_error_and_the_connection_stays_open() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@example.com").await;
    let outsider = register(&app, "outsider@example.com").await;
    let organization = personal_organization(&app, &owner).await;
    let mut socket = connect_as(&app, "graphql-transport-ws", &outsider.access).await;

    for (id, target) in [
        ("theirs", organization.clone()),
        ("missing", Uuid::now_v7().to_string()),
    ] {
        subscribe(&mut socket, false, id, &target).await;
        let refusal = receive(&mut socket).await;
        assert_eq!(refusal["type"], "error", "{refusal}");
        assert_eq!(refusal["id"], id);
        assert_eq!(refusal["payload"][0]["extensions"]["code"], "NOT_FOUND");
    }
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(receive(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn logging_out_closes_the_sessions_sockets_on_every_instance() {
    let app = TestApp::spawn().await;
    let other = app.spawn_sibling().await;
    let person = register(&app, "leaving@example.com").await;
    let organization = personal_organization(&app, &person).await;
    let mut socket = connect_as(&other, "graphql-transport-ws", &person.access).await;
    subscribe(&mut socket, false, "usage", &organization).await;
    first_update(&app, &person.access, &organization, &mut socket).await;

    let response = app.graphql_as(&person.access, "mutation { logout }", json!({})).await;
    assert_eq!(response.data()["logout"], true);
    assert_eq!(close_code(&mut socket).await, 4403);
    other.shutdown().await;
}

/// Every field an update answers from the event alone, with aliases and
/// `__typename`: a subscription asking only for these is answered without
/// the executor, once per event for all its subscribers.
const SHARED_SELECTION: &str = "__typename
    event { __typename id model promptTokens cachedTokens completionTokens tokens: totalTokens costMicroUsd priced
            requestId source estimated provider metadata occurredAt createdAt }
    quota { periodStart periodEnd tokensUsed tokenLimit remaining exceeded requestsToday dailyRequestLimit }
    crossed: thresholdCrossed";

/// Subscribes `id` to usageUpdated (under `key`) with `selection`.
async fn subscribe_to(socket: &mut Socket, legacy: bool, id: &str, organization: &str, key: &str, selection: &str) {
    let kind = if legacy { "start" } else { "subscribe" };
    let query = format!("subscription ($org: ID!) {{ {key}: usageUpdated(organizationId: $org) {{ {selection} }} }}");
    send(
        socket,
        json!({ "type": kind, "id": id, "payload": { "query": query, "variables": { "org": organization } } }),
    )
    .await;
}

/// The next message for each of `ids`, in any order.
async fn one_message_each(socket: &mut Socket, ids: &[&str]) -> Vec<Value> {
    let mut messages: Vec<Option<Value>> = vec![None; ids.len()];
    while messages.iter().any(Option::is_none) {
        let message = receive(socket).await;
        let at = ids.iter().position(|id| message["id"] == *id);
        let at = at.unwrap_or_else(|| panic!("a message for no subscription asked: {message}"));
        if messages[at].is_none() {
            messages[at] = Some(message);
        }
    }
    messages.into_iter().flatten().collect()
}

/// Records on `app` until each of `ids` has had an update (subscriptions
/// become active asynchronously), reading every message they were sent.
async fn until_active(app: &TestApp, token: &str, organization: &str, socket: &mut Socket, ids: &[&str]) {
    let mut updated = vec![false; ids.len()];
    for _ in 0..40 {
        record(app, token, organization, 1).await;
        while let Some(message) = receive_within(socket, Duration::from_millis(250)).await {
            assert_ne!(message["type"], "error", "{message}");
            if let Some(at) = ids.iter().position(|id| message["id"] == *id) {
                updated[at] = true;
            }
        }
        if updated.iter().all(|updated| *updated) {
            return;
        }
    }
    panic!("no update reached {ids:?}: {updated:?}");
}

/// Subscribes twice to [`SHARED_SELECTION`]: "shared" as it is (answered
/// from the event alone) and "executed" inside a fragment (which the
/// executor alone carries); records on `recorder` until both are active.
async fn shared_and_executed(recorder: &TestApp, token: &str, organization: &str, socket: &mut Socket, legacy: bool) {
    let fragment = format!("... on UsageUpdate {{ {SHARED_SELECTION} }}");
    subscribe_to(socket, legacy, "shared", organization, "live", SHARED_SELECTION).await;
    subscribe_to(socket, legacy, "executed", organization, "live", &fragment).await;
    until_active(recorder, token, organization, socket, &["shared", "executed"]).await;
}

/// The next update of "shared" and of "executed", which must carry the
/// same payload; returns the first.
async fn the_same_answer(socket: &mut Socket) -> Value {
    let [shared, executed] = <[Value; 2]>::try_from(one_message_each(socket, &["shared", "executed"]).await).unwrap();
    assert_eq!(shared["payload"], executed["payload"], "{shared}\n{executed}");
    shared
}

/// A subscription answered from the event alone gets, byte for byte, what
/// the executor answers to the same selection (here wrapped in a fragment,
/// which the executor alone carries), in both protocols.
#[tokio::test]
async fn an_update_answered_from_the_event_alone_is_the_executors_answer() {
    let app = TestApp::spawn().await;
    let person = register(&app, "shared-answer@example.com").await;
    let organization = personal_organization(&app, &person).await;
    for legacy in [false, true] {
        let protocol = if legacy { "graphql-ws" } else { "graphql-transport-ws" };
        let mut socket = connect_as(&app, protocol, &person.access).await;
        shared_and_executed(&app, &person.access, &organization, &mut socket, legacy).await;

        let request_id = format!("shared-{legacy}");
        let recorded = app
            .graphql_as(
                &person.access,
                RECORD,
                json!({ "input": { "organizationId": organization, "model": "gpt-4o", "promptTokens": 120,
                    "cachedTokens": 20, "completionTokens": 30, "requestId": request_id,
                    "metadata": { "feature": "chat", "nested": [1, "two", null] } } }),
            )
            .await;
        let event_id = recorded.data()["recordUsage"]["event"]["id"].clone();
        let shared = the_same_answer(&mut socket).await;
        assert_eq!(shared["type"], if legacy { "data" } else { "next" });
        let update = &shared["payload"]["data"]["live"];
        assert_eq!(update["__typename"], "UsageUpdate");
        assert_eq!(update["event"]["id"], event_id);
        assert_eq!(update["event"]["tokens"], 150);
        assert_eq!(update["event"]["cachedTokens"], 20);
        assert_eq!(update["event"]["requestId"], request_id.as_str());
        assert_eq!(
            update["event"]["metadata"],
            json!({ "feature": "chat", "nested": [1, "two", null] })
        );
        assert!(update["quota"]["tokensUsed"].as_i64().unwrap() >= 150);
        assert!(update.as_object().unwrap().contains_key("crossed"));
    }
}

/// An event recorded on one instance reaches a subscriber answered from
/// the event alone on another (the bus message is all it has there), with
/// what the executor answers on that instance to the same selection.
async fn lean_answers_cross_instances(use_redis: bool) {
    let recorder = TestApp::spawn_with_redis(use_redis).await;
    let watcher = recorder.spawn_sibling().await;
    let person = register(&recorder, "lean-cross@example.com").await;
    let organization = personal_organization(&recorder, &person).await;
    let mut socket = connect_as(&watcher, "graphql-transport-ws", &person.access).await;
    shared_and_executed(&recorder, &person.access, &organization, &mut socket, false).await;

    let recorded = recorder
        .graphql_as(
            &person.access,
            RECORD,
            json!({ "input": { "organizationId": organization, "model": "gpt-4o", "promptTokens": 70,
                "cachedTokens": 7, "completionTokens": 5, "requestId": "lean-cross",
                "metadata": { "feature": "review" } } }),
        )
        .await;
    let event_id = recorded.data()["recordUsage"]["event"]["id"].clone();
    let shared = the_same_answer(&mut socket).await;
    assert_eq!(shared["type"], "next");
    let update = &shared["payload"]["data"]["live"];
    assert_eq!(update["event"]["id"], event_id);
    assert_eq!(update["event"]["tokens"], 75);
    assert_eq!(update["event"]["cachedTokens"], 7);
    assert_eq!(update["event"]["requestId"], "lean-cross");
    assert_eq!(update["event"]["metadata"], json!({ "feature": "review" }));
    recorder.shutdown().await;
    watcher.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_answered_from_the_event_alone_on_another_instance_gets_it_through_redis() {
    lean_answers_cross_instances(true).await;
}

#[tokio::test]
async fn a_subscriber_answered_from_the_event_alone_on_another_instance_gets_it_through_postgresql() {
    lean_answers_cross_instances(false).await;
}

/// Skips updates still in flight and asserts that the subscription then
/// ended with a FORBIDDEN error.
async fn assert_subscription_forbidden(socket: &mut Socket) {
    let ending = loop {
        let message = receive(socket).await;
        if message["type"] != "next" {
            break message;
        }
    };
    assert_eq!(ending["type"], "error", "{ending}");
    assert_eq!(ending["payload"][0]["extensions"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn a_removed_member_subscription_ends_with_forbidden() {
    let app = TestApp::spawn().await;
    let owner = register_verified(&app, "boss@example.com").await;
    let member = register(&app, "member@example.com").await;
    let created = app
        .graphql_as(
            &owner.access,
            "mutation { createOrganization(input: { name: \"Team Live\" }) { id } }",
            json!({}),
        )
        .await;
    let organization = created.data()["createOrganization"]["id"].as_str().unwrap().to_owned();
    add_member(
        &app,
        Uuid::parse_str(&organization).unwrap(),
        member.user_id,
        OrgRole::Member,
    )
    .await;
    let mut socket = connect_as(&app, "graphql-transport-ws", &member.access).await;
    subscribe(&mut socket, false, "usage", &organization).await;
    first_update(&app, &owner.access, &organization, &mut socket).await;
    // And one answered from the event alone, which ends the same way.
    subscribe_to(
        &mut socket,
        false,
        "shared",
        &organization,
        "usageUpdated",
        "event { id }",
    )
    .await;
    until_active(&app, &owner.access, &organization, &mut socket, &["usage", "shared"]).await;

    let removed = app
        .graphql_as(
            &owner.access,
            "mutation ($org: ID!, $user: ID!) { removeMember(organizationId: $org, userId: $user) }",
            json!({ "org": organization, "user": member.user_id }),
        )
        .await;
    assert_eq!(removed.data()["removeMember"], true);
    let mut endings = Vec::new();
    while endings.len() < 2 {
        let message = receive(&mut socket).await;
        if message["type"] != "next" {
            endings.push(message);
        }
    }
    for ending in &endings {
        assert_eq!(ending["type"], "error", "{ending}");
        assert_eq!(ending["payload"][0]["extensions"]["code"], "FORBIDDEN");
        assert_eq!(ending["payload"][0]["path"], json!(["usageUpdated"]));
    }
    assert_eq!(endings[0]["payload"][0]["message"], endings[1]["payload"][0]["message"]);
    // The connection itself stays usable.
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(receive(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn a_demoted_staff_members_subscription_to_a_foreign_organization_ends() {
    let app = TestApp::spawn().await;
    let other = app.spawn_sibling().await;
    let owner = register(&app, "watched@example.com").await;
    let organization = personal_organization(&app, &owner).await;
    let support = crate::harness::create_user(&app, "support@staff.test", tollgate::auth::users::Role::Support).await;
    let support_token = app.token_for(support).await;
    let mut socket = connect_as(&other, "graphql-transport-ws", &support_token).await;
    subscribe(&mut socket, false, "usage", &organization).await;
    first_update(&app, &owner.access, &organization, &mut socket).await;

    let admin = crate::usage::admin_token(&app).await;
    let demoted = app
        .graphql_as(
            &admin,
            "mutation ($user: ID!) { setUserRole(userId: $user, role: USER) { role } }",
            json!({ "user": support }),
        )
        .await;
    assert_eq!(demoted.data()["setUserRole"]["role"], "USER");
    assert_subscription_forbidden(&mut socket).await;
    other.shutdown().await;
}

/// Nested fields of an update are resolved when it is sent: a change made
/// after subscribing (here the reporter's name, which the first update
/// loaded) shows in the next one.
#[tokio::test]
async fn each_update_resolves_its_fields_afresh() {
    let app = TestApp::spawn().await;
    let person = register(&app, "renamed@example.com").await;
    let organization = personal_organization(&app, &person).await;
    let mut socket = connect_as(&app, "graphql-transport-ws", &person.access).await;
    let query = "subscription ($org: ID!) { usageUpdated(organizationId: $org) { event { id user { name } } } }";
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "named", "payload": { "query": query, "variables": { "org": organization } } }),
    )
    .await;
    let (first, _) = first_update(&app, &person.access, &organization, &mut socket).await;
    let before = first["payload"]["data"]["usageUpdated"]["event"]["user"]["name"].clone();

    let renamed = app
        .graphql_as(
            &person.access,
            "mutation { updateProfile(input: { name: \"Renamed Person\" }) { name } }",
            json!({}),
        )
        .await;
    assert_eq!(renamed.data()["updateProfile"]["name"], "Renamed Person");
    assert_ne!(before, "Renamed Person");
    let last = record(&app, &person.access, &organization, 7).await;
    let update = loop {
        let message = receive(&mut socket).await;
        let update = message["payload"]["data"]["usageUpdated"]["event"].clone();
        if update["id"] == last.as_str() {
            break update;
        }
    };
    assert_eq!(update["user"]["name"], "Renamed Person");
}

const CREATE_KEY: &str =
    "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }";

/// Creates a key of the organization with these scopes: (id, secret).
async fn create_key(app: &TestApp, token: &str, organization: &str, scopes: &[&str]) -> (String, String) {
    verify_caller(app, token).await;
    let response = app
        .graphql_as(
            token,
            CREATE_KEY,
            json!({ "input": { "organizationId": organization, "name": "dashboard", "scopes": scopes } }),
        )
        .await;
    let created = &response.data()["createApiKey"];
    (
        created["apiKey"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn keys_subscribe_with_usage_read_and_their_sockets_close_when_revoked() {
    let app = TestApp::spawn().await;
    let other = app.spawn_sibling().await;
    let person = register(&app, "keys-live@example.com").await;
    let organization = personal_organization(&app, &person).await;
    let (_, writer) = create_key(&app, &person.access, &organization, &["USAGE_WRITE"]).await;
    let (reader_id, reader) = create_key(&app, &person.access, &organization, &["USAGE_READ"]).await;

    let mut refused = connect_as(&other, "graphql-transport-ws", &writer).await;
    subscribe(&mut refused, false, "usage", &organization).await;
    let refusal = receive(&mut refused).await;
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_eq!(refusal["payload"][0]["extensions"]["code"], "FORBIDDEN");

    let mut socket = connect_as(&other, "graphql-transport-ws", &reader).await;
    subscribe(&mut socket, false, "usage", &organization).await;
    first_update(&app, &person.access, &organization, &mut socket).await;

    let revoked = app
        .graphql_as(
            &person.access,
            "mutation ($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
            json!({ "id": reader_id }),
        )
        .await;
    assert!(revoked.data()["revokeApiKey"]["revokedAt"].is_string());
    assert_eq!(close_code(&mut socket).await, 4403);
    other.shutdown().await;
}

/// Waits for the socket's close, asserting it comes after `at_least`
/// (the credentials were good until then); returns the code.
async fn closed_after(socket: &mut Socket, opened: std::time::Instant, at_least: Duration) -> u16 {
    let code = close_code(socket).await;
    assert!(opened.elapsed() >= at_least, "closed before the credentials expired");
    code
}

/// Both protocols.
#[tokio::test]
async fn a_sockets_key_expiring_closes_it() {
    let app = TestApp::spawn().await;
    let person = register_verified(&app, "expiring-key@example.com").await;
    let organization = personal_organization(&app, &person).await;
    let expires_at = app.state.now() + chrono::Duration::seconds(3);
    let response = app
        .graphql_as(
            &person.access,
            CREATE_KEY,
            json!({ "input": { "organizationId": organization, "name": "short", "scopes": ["USAGE_READ"],
                               "expiresAt": expires_at.to_rfc3339() } }),
        )
        .await;
    let secret = response.data()["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let opened = std::time::Instant::now();
    let mut current = connect_as(&app, "graphql-transport-ws", &secret).await;
    subscribe(&mut current, false, "usage", &organization).await;
    let mut legacy = connect_as(&app, "graphql-ws", &secret).await;
    subscribe(&mut legacy, true, "usage", &organization).await;
    assert_eq!(closed_after(&mut current, opened, Duration::from_secs(2)).await, 4403);
    assert_eq!(closed_after(&mut legacy, opened, Duration::from_secs(2)).await, 4403);
}

#[tokio::test]
async fn a_sockets_access_token_expiring_closes_it() {
    let app = TestApp::spawn_with(TestAppOptions {
        vars: vec![("ACCESS_TOKEN_TTL_SECS".to_owned(), "3".to_owned())],
        ..TestAppOptions::default()
    })
    .await;
    let person = register(&app, "expiring-token@example.com").await;
    let organization = personal_organization(&app, &person).await;
    let opened = std::time::Instant::now();
    let mut socket = connect_as(&app, "graphql-transport-ws", &person.access).await;
    subscribe(&mut socket, false, "usage", &organization).await;
    assert_eq!(closed_after(&mut socket, opened, Duration::from_secs(1)).await, 4403);
}

#[tokio::test]
async fn one_account_may_hold_only_so_many_connections() {
    let app = TestApp::spawn().await;
    let person = register(&app, "many@example.com").await;
    let mut open = Vec::new();
    for _ in 0..tollgate::usage::live::MAX_CONNECTIONS_PER_PRINCIPAL {
        open.push(connect_as(&app, "graphql-transport-ws", &person.access).await);
    }
    assert!(
        try_connect(&app, &person.access).await.is_none(),
        "one connection too many"
    );

    // A closed connection gives its slot back.
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        again = try_connect(&app, &person.access).await;
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a slot came free after a connection closed");
}

/// Opens a connection as `token`: the socket when acknowledged, None when
/// the server closed it with 4430 (too many connections).
async fn try_connect(app: &TestApp, token: &str) -> Option<Socket> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut socket = crate::harness::ws::connect(app, "graphql-transport-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": token } }),
    )
    .await;
    let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("an answer to connection_init")
        .expect("the socket is open")
        .expect("a websocket message");
    match reply {
        Message::Text(text) if text.contains("connection_ack") => Some(socket),
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4430);
            None
        }
        other => panic!("unexpected answer {other:?}"),
    }
}
