//! recordUsageBatch: all or nothing with the refused input's index,
//! repeats inside the batch or already stored, one organization per batch,
//! the size limit, a statement count that does not grow with the batch,
//! and one bus message per recorded event.

use std::time::Duration as StdDuration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{auth::roles::OrgRole, db::schema::usage_events, platform::events::BusMessage};
use uuid::Uuid;

use crate::{
    harness::{GqlResponse, TestApp},
    usage::{app_mid_month, create_key, field_of, mid_month, recorded, set_free_plan, team},
};

const BATCH: &str = "mutation ($inputs: [RecordUsageInput!]!) { recordUsageBatch(inputs: $inputs) {
    duplicate event { id requestId totalTokens costMicroUsd priced user { id } } quota { tokensUsed requestsToday } } }";

async fn batch(app: &TestApp, token: &str, inputs: Vec<Value>) -> GqlResponse {
    app.graphql_as(token, BATCH, json!({ "inputs": inputs })).await
}

fn input(organization: &str, request_id: &str, prompt: i64) -> Value {
    json!({ "organizationId": organization, "model": "gpt-4o", "promptTokens": prompt, "completionTokens": 10,
            "requestId": request_id })
}

fn index_of(response: &GqlResponse) -> Option<u64> {
    response.body["errors"][0]["extensions"]["index"].as_u64()
}

async fn stored(app: &TestApp, organization: &str) -> i64 {
    usage_events::table
        .filter(usage_events::organization_id.eq(organization.parse::<Uuid>().unwrap()))
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_records_every_input_and_answers_in_order() {
    let app = app_mid_month().await;
    let team = team(&app, "batch.test", &[]).await;
    let inputs = vec![
        input(&team.id, "a", 100),
        json!({ "organizationId": team.id, "model": "mystery", "promptTokens": 5, "completionTokens": 5 }),
        input(&team.id, "b", 300),
    ];
    let response = batch(&app, &team.owner.access, inputs).await;
    let receipts = response.data()["recordUsageBatch"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), 3);
    assert_eq!(receipts[0]["event"]["requestId"], "a");
    assert_eq!(receipts[1]["event"]["priced"], false);
    assert_eq!(receipts[2]["event"]["totalTokens"], 310);
    for receipt in &receipts {
        assert_eq!(receipt["duplicate"], false);
        assert_eq!(
            receipt["quota"],
            json!({ "tokensUsed": 110 + 10 + 310, "requestsToday": 3 })
        );
        assert_eq!(receipt["event"]["user"]["id"], team.owner.user_id.to_string());
    }
    assert_eq!(stored(&app, &team.id).await, 3);
    let empty = batch(&app, &team.owner.access, Vec::new()).await;
    assert_eq!(empty.data()["recordUsageBatch"], json!([]));
}

/// A client retrying a whole batch weeks later must learn that its calls
/// were recorded, not be refused for their age; other numbers under a
/// stored requestId are CONFLICT, and a new input that old is still
/// refused, by index.
#[tokio::test]
async fn a_batch_retried_after_the_age_window_answers_its_originals() {
    let app = app_mid_month().await;
    let team = team(&app, "late-retry.test", &[]).await;
    let (_, key) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let occurred_at = (mid_month() - chrono::Duration::days(30)).to_rfc3339();
    let mut old = input(&team.id, "old-1", 100);
    old["occurredAt"] = json!(occurred_at);
    let mut second = input(&team.id, "old-2", 200);
    second["occurredAt"] = json!(occurred_at);
    let first = batch(&app, &key, vec![old.clone(), second.clone()]).await;
    let originals = first.data()["recordUsageBatch"].as_array().unwrap().clone();

    app.clock.advance(chrono::Duration::days(10));
    let retried = batch(&app, &key, vec![old.clone(), second.clone()]).await;
    let receipts = retried.data()["recordUsageBatch"].as_array().unwrap().clone();
    for (receipt, original) in receipts.iter().zip(&originals) {
        assert_eq!(receipt["duplicate"], true);
        assert_eq!(receipt["event"]["id"], original["event"]["id"]);
    }
    assert_eq!(stored(&app, &team.id).await, 2);

    let mut changed = second.clone();
    changed["promptTokens"] = json!(201);
    let conflicting = batch(&app, &key, vec![old.clone(), changed]).await;
    assert_eq!(conflicting.error_code(), Some("CONFLICT"));
    assert_eq!(index_of(&conflicting), Some(1));
    let mut unknown = second;
    unknown["requestId"] = json!("old-3");
    let refused = batch(&app, &key, vec![old, unknown]).await;
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field_of(&refused), Some("occurredAt"));
    assert_eq!(index_of(&refused), Some(1));
}

#[tokio::test]
async fn one_refused_input_refuses_the_batch_and_names_its_index() {
    let app = app_mid_month().await;
    let team = team(&app, "refused.test", &[]).await;
    let token = &team.owner.access;
    let mut bad = input(&team.id, "c", 10);
    bad["cachedTokens"] = json!(11);
    let response = batch(
        &app,
        token,
        vec![input(&team.id, "a", 10), input(&team.id, "b", 10), bad],
    )
    .await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field_of(&response), Some("cachedTokens"));
    assert_eq!(index_of(&response), Some(2));
    assert_eq!(
        stored(&app, &team.id).await,
        0,
        "nothing of a refused batch is recorded"
    );

    // One requestId with different numbers inside the batch.
    let response = batch(
        &app,
        token,
        vec![
            input(&team.id, "a", 10),
            input(&team.id, "b", 10),
            input(&team.id, "a", 11),
        ],
    )
    .await;
    assert_eq!(response.error_code(), Some("CONFLICT"));
    assert_eq!(index_of(&response), Some(2));

    // Or against one already stored: the inputs before it are rolled back too.
    recorded(&app, token, input(&team.id, "kept", 10)).await;
    let response = batch(&app, token, vec![input(&team.id, "x", 10), input(&team.id, "kept", 99)]).await;
    assert_eq!(response.error_code(), Some("CONFLICT"));
    assert_eq!(index_of(&response), Some(1));
    assert_eq!(stored(&app, &team.id).await, 1);
}

#[tokio::test]
async fn repeats_inside_the_batch_or_already_stored_come_back_as_duplicates() {
    let app = app_mid_month().await;
    let team = team(&app, "repeats.test", &[]).await;
    let token = &team.owner.access;
    let first = recorded(&app, token, input(&team.id, "old", 100)).await;
    let response = batch(
        &app,
        token,
        vec![
            input(&team.id, "new", 200),
            input(&team.id, "old", 100),
            input(&team.id, "new", 200),
            input(&team.id, "other", 300),
        ],
    )
    .await;
    let receipts = response.data()["recordUsageBatch"].as_array().unwrap().clone();
    let duplicates: Vec<bool> = receipts.iter().map(|r| r["duplicate"].as_bool().unwrap()).collect();
    assert_eq!(duplicates, vec![false, true, true, false]);
    assert_eq!(receipts[1]["event"]["id"], first["event"]["id"]);
    assert_eq!(receipts[2]["event"]["id"], receipts[0]["event"]["id"]);
    assert_eq!(receipts[3]["quota"]["tokensUsed"], 110 + 210 + 310);
    assert_eq!(stored(&app, &team.id).await, 3);
    // The whole batch again: every input a duplicate, nothing counted.
    let again = batch(
        &app,
        token,
        vec![input(&team.id, "new", 200), input(&team.id, "other", 300)],
    )
    .await;
    for receipt in again.data()["recordUsageBatch"].as_array().unwrap() {
        assert_eq!(receipt["duplicate"], true);
        assert_eq!(receipt["quota"]["tokensUsed"], 630);
    }
}

#[tokio::test]
async fn a_batch_is_of_one_organization_and_at_most_a_thousand_inputs() {
    let app = app_mid_month().await;
    let team = team(&app, "one-org.test", &[]).await;
    let other = crate::usage::team(&app, "one-org-other.test", &[("member", OrgRole::Member)]).await;
    let token = &team.owner.access;

    let too_many: Vec<Value> = (0..1001).map(|n| input(&team.id, &format!("r{n}"), 1)).collect();
    let response = batch(&app, token, too_many).await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field_of(&response), Some("inputs"));

    let mixed = batch(
        &app,
        &other.people[0].access,
        vec![input(&other.id, "a", 1), input(&team.id, "b", 1)],
    )
    .await;
    assert_eq!(mixed.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field_of(&mixed), Some("organizationId"));
    assert_eq!(index_of(&mixed), Some(1));
    let mut missing = input(&team.id, "b", 1);
    missing.as_object_mut().unwrap().remove("organizationId");
    let response = batch(&app, token, vec![input(&team.id, "a", 1), missing]).await;
    assert_eq!(
        (field_of(&response), index_of(&response)),
        (Some("organizationId"), Some(1))
    );

    // A key's batch is its organization's; naming another is FORBIDDEN.
    let (_, secret) = create_key(&app, token, &team.id, json!({})).await;
    let keyed = json!({ "model": "gpt-4o", "promptTokens": 1, "completionTokens": 1 });
    let response = batch(&app, &secret, vec![keyed.clone(), input(&other.id, "x", 1)]).await;
    assert_eq!(response.error_code(), Some("FORBIDDEN"));
    assert_eq!(index_of(&response), Some(1));
    let response = batch(&app, &secret, vec![keyed.clone(), input(&team.id, "y", 1)]).await;
    assert_eq!(response.data()["recordUsageBatch"].as_array().unwrap().len(), 2);
    assert_eq!(stored(&app, &other.id).await, 0);
}

#[tokio::test]
async fn a_thousand_inputs_take_as_many_statements_as_ten() {
    let app = app_mid_month().await;
    // No token limit: crossing a threshold would add statements to one batch only.
    set_free_plan(&app, None, None, None).await;
    let team = team(&app, "statements.test", &[]).await;
    let token = &team.owner.access;
    let inputs = |prefix: &str, count: usize| -> Vec<Value> {
        (0..count)
            .map(|n| {
                let mut input = input(&team.id, &format!("{prefix}-{n}"), 10 + n as i64);
                input["model"] = json!(["gpt-4o", "claude-sonnet-4-5", "mystery"][n % 3]);
                input
            })
            .collect()
    };
    // Warm up: the session's first request reads it from the database.
    batch(&app, token, inputs("warm", 3)).await.data();
    // The write path only: fields that go through loaders are another matter.
    const LEAN: &str = "mutation ($inputs: [RecordUsageInput!]!) { recordUsageBatch(inputs: $inputs) {
        duplicate event { id costMicroUsd } quota { tokensUsed } } }";
    let mut counts = Vec::new();
    for (prefix, count) in [("ten", 10), ("thousand", 1000)] {
        let before = app.query_count();
        let response = app
            .graphql_as(token, LEAN, json!({ "inputs": inputs(prefix, count) }))
            .await;
        assert_eq!(response.data()["recordUsageBatch"].as_array().unwrap().len(), count);
        counts.push(app.query_count() - before);
    }
    assert_eq!(
        counts[0], counts[1],
        "statements do not grow with the batch: {counts:?}"
    );
    assert!(counts[1] <= 15, "a handful of statements: {counts:?}");
    assert_eq!(stored(&app, &team.id).await, 3 + 10 + 1000);
}

#[tokio::test]
async fn each_recorded_event_is_published_once_with_its_running_quota() {
    let app = app_mid_month().await;
    let team = team(&app, "published.test", &[]).await;
    let token = &team.owner.access;
    recorded(&app, token, input(&team.id, "before", 90)).await;
    let (mut messages, _) = app.state.events().subscribe();
    let response = batch(
        &app,
        token,
        vec![
            input(&team.id, "one", 90),
            input(&team.id, "before", 90),
            input(&team.id, "two", 190),
        ],
    )
    .await;
    let receipts = response.data()["recordUsageBatch"].as_array().unwrap().clone();
    let mut published = Vec::new();
    while let Ok(Ok(message)) = tokio::time::timeout(StdDuration::from_millis(1500), messages.recv()).await {
        if let BusMessage::Event { topic, payload } = message
            && &*topic == "usage.recorded"
        {
            let update = tollgate::usage::live_message::UsageUpdateMessage::from_json(&payload).unwrap();
            published.push((
                update.event.id.to_string(),
                update.quota.tokens_used,
                update.quota.requests_today,
            ));
        }
    }
    let id = |n: usize| receipts[n]["event"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        published,
        vec![(id(0), 200, 2), (id(2), 400, 3)],
        "duplicates publish nothing"
    );
}
