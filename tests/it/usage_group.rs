//! Concurrent recordings written together, of one organization or of
//! many: fewer statements than one transaction each, every caller's quota
//! as it stood just after its own event (strictly ordered, summing to the
//! counters), a requestId unique per organization only, and one refused
//! recording (a requestId stored with other numbers) refused alone while
//! its neighbours are recorded.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tollgate::db::schema::{usage_counters, usage_events};
use uuid::Uuid;

use crate::{
    harness::{GqlResponse, TestApp},
    usage::{app_mid_month, mid_month, record, recorded, set_free_plan, team},
};

const BATCH: &str = "mutation ($inputs: [RecordUsageInput!]!) { recordUsageBatch(inputs: $inputs) {
    duplicate event { id requestId totalTokens } quota { tokensUsed requestsToday } } }";

fn call(organization: &str, prompt: i64, request_id: Option<&str>) -> Value {
    let mut input = json!({ "organizationId": organization, "model": "gpt-4o", "promptTokens": prompt,
        "completionTokens": 1 });
    if let Some(id) = request_id {
        input["requestId"] = json!(id);
    }
    input
}

/// The organization's stored events: requestId and total tokens.
async fn stored(app: &TestApp, organization: Uuid) -> Vec<(Option<String>, i64)> {
    let rows: Vec<(Option<String>, i32)> = usage_events::table
        .filter(usage_events::organization_id.eq(organization))
        .select((usage_events::request_id, usage_events::total_tokens))
        .load(&mut app.db().await)
        .await
        .unwrap();
    rows.into_iter().map(|(id, tokens)| (id, i64::from(tokens))).collect()
}

/// The organization's (tokens, requests) counters of `kind`, summed.
async fn counter(app: &TestApp, organization: Uuid, kind: &str) -> (i64, i64) {
    let rows: Vec<(i64, i64)> = usage_counters::table
        .filter(usage_counters::organization_id.eq(organization))
        .filter(usage_counters::subject_kind.eq(kind))
        .select((usage_counters::tokens, usage_counters::requests))
        .load(&mut app.db().await)
        .await
        .unwrap();
    rows.iter().fold((0, 0), |sum, row| (sum.0 + row.0, sum.1 + row.1))
}

/// Total tokens and count of events.
fn sum(events: &[(Option<String>, i64)]) -> (i64, i64) {
    (events.iter().map(|e| e.1).sum(), events.len() as i64)
}

#[tokio::test]
async fn concurrent_reports_share_transactions_and_each_sees_the_quota_just_after_its_own_event() {
    let app = app_mid_month().await;
    // No limit: a threshold crossed would add statements to one call only.
    set_free_plan(&app, None, None, None).await;
    let team = team(&app, "group.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let token = &team.owner.access;
    // Warm up (the session is read once), then one call alone.
    recorded(&app, token, call(&team.id, 5, None)).await;
    let before = app.query_count();
    let alone = recorded(&app, token, call(&team.id, 7, None)).await;
    let per_call = app.query_count() - before;
    assert_eq!(alone["quota"]["tokensUsed"], 6 + 8);

    const CALLS: i64 = 48;
    let before = app.query_count();
    let responses = join_all((0..CALLS).map(|n| record(&app, token, call(&team.id, 10 + n, None)))).await;
    let statements = app.query_count() - before;
    assert!(
        statements < CALLS as u64 * per_call / 2,
        "{CALLS} concurrent reports took {statements} statements, one alone {per_call}: they were not written together"
    );

    // Ordered by requestsToday, each receipt's tokensUsed is the one
    // before it plus its own event: every caller saw the quota just after
    // its own event, as if the calls had been written one by one.
    let mut receipts: Vec<(i64, i64, i64)> = responses
        .iter()
        .map(|response| {
            let receipt = &response.data()["recordUsage"];
            assert_eq!(receipt["duplicate"], false);
            (
                receipt["quota"]["requestsToday"].as_i64().unwrap(),
                receipt["quota"]["tokensUsed"].as_i64().unwrap(),
                receipt["event"]["totalTokens"].as_i64().unwrap(),
            )
        })
        .collect();
    receipts.sort();
    let mut previous = (2, 6 + 8);
    for (requests, tokens, own) in &receipts {
        assert_eq!(
            *requests,
            previous.0 + 1,
            "requestsToday strictly ordered: {receipts:?}"
        );
        assert_eq!(*tokens, previous.1 + own, "tokensUsed strictly ordered: {receipts:?}");
        previous = (*requests, *tokens);
    }
    let events = stored(&app, organization).await;
    assert_eq!(events.len() as i64, CALLS + 2);
    assert_eq!(counter(&app, organization, "ORGANIZATION").await, sum(&events));
    assert_eq!(counter(&app, organization, "MEMBER").await, sum(&events));
    assert_eq!(counter(&app, organization, "DAY").await, sum(&events));
    assert_eq!(previous, (sum(&events).1, sum(&events).0));
}

#[tokio::test]
async fn a_repeated_request_id_among_concurrent_reports_is_a_duplicate_or_a_conflict_and_its_neighbours_count() {
    let app = app_mid_month().await;
    let team = team(&app, "group-repeat.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let token = &team.owner.access;
    // "same" three times with one set of numbers, once with another.
    let prompt_of = |n: i64| if n == 25 { 999 } else { 100 + n };
    let request_of = |n: i64| {
        if n % 10 == 0 || n == 25 {
            "same".to_owned()
        } else {
            format!("r-{n}")
        }
    };
    let responses = join_all((0..30).map(|n| {
        let input = call(&team.id, prompt_of(n), Some(request_of(n).as_str()));
        let app = &app;
        async move { (n, record(app, token, input).await) }
    }))
    .await;

    let events = stored(&app, organization).await;
    assert_eq!(events.len(), 27, "26 distinct requestIds and one \"same\"");
    let same_tokens = events.iter().find(|e| e.0.as_deref() == Some("same")).unwrap().1;
    let mut same_ids = HashSet::new();
    let mut new_same = 0;
    for (n, response) in &responses {
        let own_tokens = prompt_of(*n) + 1;
        if request_of(*n) != "same" {
            let receipt = &response.data()["recordUsage"];
            assert_eq!(receipt["duplicate"], false);
            assert_eq!(receipt["event"]["totalTokens"], own_tokens);
        } else if own_tokens == same_tokens {
            let receipt = &response.data()["recordUsage"];
            same_ids.insert(receipt["event"]["id"].as_str().unwrap().to_owned());
            new_same += usize::from(receipt["duplicate"] == false);
        } else {
            assert_eq!(response.error_code(), Some("CONFLICT"), "{}", response.body);
        }
    }
    assert_eq!(same_ids.len(), 1, "every repeat names the one stored event");
    assert_eq!(new_same, 1, "exactly one call recorded it");
    assert_eq!(counter(&app, organization, "ORGANIZATION").await, sum(&events));
    assert_eq!(counter(&app, organization, "DAY").await, sum(&events));
}

#[tokio::test]
async fn a_batch_refused_at_write_time_leaves_its_concurrent_neighbours_recorded() {
    let app = app_mid_month().await;
    let team = team(&app, "group-batch.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let token = &team.owner.access;
    recorded(&app, token, call(&team.id, 100, Some("taken"))).await;

    // Six batches at once; the fourth repeats "taken" with other numbers
    // at index 2, which only the insert can tell.
    let batches: Vec<Vec<Value>> = (0..6)
        .map(|b| {
            (0..5)
                .map(|i| {
                    if b == 3 && i == 2 {
                        call(&team.id, 555, Some("taken"))
                    } else {
                        call(&team.id, 10 * b + i, Some(format!("b{b}-{i}").as_str()))
                    }
                })
                .collect()
        })
        .collect();
    let single = call(&team.id, 1000, Some("single"));
    let (responses, alone): (Vec<GqlResponse>, GqlResponse) = tokio::join!(
        join_all(
            batches
                .iter()
                .map(|inputs| app.graphql_as(token, BATCH, json!({ "inputs": inputs })))
        ),
        record(&app, token, single),
    );

    for (b, response) in responses.iter().enumerate() {
        if b == 3 {
            assert_eq!(response.error_code(), Some("CONFLICT"), "{}", response.body);
            assert_eq!(response.body["errors"][0]["extensions"]["index"], 2);
            continue;
        }
        let receipts = response.data()["recordUsageBatch"].as_array().unwrap();
        assert_eq!(receipts.len(), 5);
        assert!(receipts.iter().all(|r| r["duplicate"] == false), "{receipts:?}");
    }
    assert_eq!(alone.data()["recordUsage"]["duplicate"], false);

    let events = stored(&app, organization).await;
    let ids: HashMap<&str, i64> = events.iter().filter_map(|e| Some((e.0.as_deref()?, e.1))).collect();
    assert_eq!(
        events.len(),
        1 + 5 * 5 + 1,
        "the refused batch recorded nothing, its neighbours everything"
    );
    assert_eq!(ids["taken"], 101, "the stored event is untouched");
    assert!(
        (0..5).all(|i| !ids.contains_key(format!("b3-{i}").as_str())),
        "all or nothing: {ids:?}"
    );
    assert_eq!(counter(&app, organization, "ORGANIZATION").await, sum(&events));
    assert_eq!(counter(&app, organization, "DAY").await, sum(&events));
}

#[tokio::test]
async fn concurrent_reports_of_many_organizations_share_transactions_and_each_counts_its_own() {
    let app = app_mid_month().await;
    set_free_plan(&app, None, None, None).await;
    let team = team(&app, "group-many.test", &[]).await;
    let token = &team.owner.access;
    const ORGANIZATIONS: usize = 16;
    let mut organizations = vec![team.id.clone()];
    for n in 1..ORGANIZATIONS {
        let created = app
            .graphql_as(
                token,
                "mutation ($name: String!) { createOrganization(input: { name: $name }) { id } }",
                json!({ "name": format!("Team {n}") }),
            )
            .await;
        organizations.push(created.data()["createOrganization"]["id"].as_str().unwrap().to_owned());
    }
    // Warm up (the session is read once), then one call alone.
    recorded(&app, token, call(&organizations[0], 5, None)).await;
    let before = app.query_count();
    recorded(&app, token, call(&organizations[0], 7, None)).await;
    let per_call = app.query_count() - before;

    // Three calls per organization at once, all with the same requestIds:
    // a requestId is unique within its organization only.
    let calls: Vec<(usize, i64)> = (0..3)
        .flat_map(|round| (0..ORGANIZATIONS).map(move |org| (org, round)))
        .collect();
    let before = app.query_count();
    let responses = join_all(calls.iter().map(|&(org, round)| {
        let request_id = format!("call-{round}");
        let input = call(
            &organizations[org],
            10 * (org as i64 + 1) + round,
            Some(request_id.as_str()),
        );
        let app = &app;
        async move { (org, record(app, token, input).await) }
    }))
    .await;
    let statements = app.query_count() - before;
    assert!(
        statements < calls.len() as u64 * per_call / 2,
        "{} concurrent reports over {ORGANIZATIONS} organizations took {statements} statements, one alone \
         {per_call}: they were not written together",
        calls.len()
    );

    let mut by_organization: HashMap<usize, Vec<(i64, i64, i64)>> = HashMap::new();
    for (org, response) in &responses {
        let receipt = &response.data()["recordUsage"];
        assert_eq!(receipt["duplicate"], false, "{}", response.body);
        by_organization.entry(*org).or_default().push((
            receipt["quota"]["requestsToday"].as_i64().unwrap(),
            receipt["quota"]["tokensUsed"].as_i64().unwrap(),
            receipt["event"]["totalTokens"].as_i64().unwrap(),
        ));
    }
    for (org, id) in organizations.iter().enumerate() {
        let organization: Uuid = id.parse().unwrap();
        let events = stored(&app, organization).await;
        let mut receipts = by_organization.remove(&org).unwrap();
        receipts.sort();
        // Each receipt: its own organization's quota just after its event.
        let earlier = if org == 0 { (2, 6 + 8) } else { (0, 0) };
        let mut previous = earlier;
        for (requests, tokens, own) in &receipts {
            assert_eq!(*requests, previous.0 + 1, "organization {org}: {receipts:?}");
            assert_eq!(*tokens, previous.1 + own, "organization {org}: {receipts:?}");
            previous = (*requests, *tokens);
        }
        assert_eq!(events.len(), receipts.len() + earlier.0 as usize, "organization {org}");
        assert_eq!(previous, (sum(&events).1, sum(&events).0), "organization {org}");
        assert_eq!(counter(&app, organization, "ORGANIZATION").await, sum(&events));
        assert_eq!(counter(&app, organization, "MEMBER").await, sum(&events));
        assert_eq!(counter(&app, organization, "DAY").await, sum(&events));
    }
}

/// A group whose one recording left after planning is then refused (its
/// requestId stored with other numbers) has nothing to write and rolls
/// back; each of its recordings is still answered with its own refusal. A
/// batch that planning refused (its own repeat at index 2) keeps its
/// CONFLICT at index 2 rather than getting the lone recording's.
#[tokio::test]
async fn a_lone_recording_refused_at_write_time_leaves_its_neighbours_their_own_refusals() {
    // With Redis, and without it (the default set-up: PostgreSQL alone).
    for use_redis in [true, false] {
        let app = TestApp::spawn_with_redis(use_redis).await;
        app.clock.set(mid_month());
        lone_refusal_in_a_group(&app).await;
    }
}

async fn lone_refusal_in_a_group(app: &TestApp) {
    let team = team(app, "group-lone.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let token = &team.owner.access;
    recorded(app, token, call(&team.id, 100, Some("taken"))).await;

    // The organization's row held, so that the writer's next transaction
    // waits on it and the next two reports queue behind it, as one group.
    let mut holder = app.db().await;
    diesel::sql_query("BEGIN").execute(&mut *holder).await.unwrap();
    diesel::sql_query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(organization)
        .execute(&mut *holder)
        .await
        .unwrap();
    let first = record(app, token, call(&team.id, 1, Some("first")));
    let batch = [
        call(&team.id, 10, Some("b-0")),
        call(&team.id, 11, Some("b-1")),
        call(&team.id, 12, Some("b-0")),
    ];
    let queued = async {
        app.wait_for_a_lock_waiter().await;
        tokio::join!(
            app.graphql_as(token, BATCH, json!({ "inputs": batch })),
            record(app, token, call(&team.id, 555, Some("taken"))),
        )
    };
    let release = async {
        app.wait_for_a_lock_waiter().await;
        // Time for both reports to reach the writer's queue.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        diesel::sql_query("COMMIT").execute(&mut *holder).await.unwrap();
    };
    let (first, (batch, taken), ()) = tokio::join!(first, queued, release);

    assert_eq!(first.data()["recordUsage"]["duplicate"], false);
    assert_eq!(batch.error_code(), Some("CONFLICT"), "{}", batch.body);
    assert_eq!(
        batch.body["errors"][0]["extensions"]["index"], 2,
        "the batch's own refusal: {}",
        batch.body
    );
    assert_eq!(taken.error_code(), Some("CONFLICT"), "{}", taken.body);
    let events = stored(app, organization).await;
    let ids: HashMap<&str, i64> = events.iter().filter_map(|e| Some((e.0.as_deref()?, e.1))).collect();
    assert_eq!(ids.len(), 2, "only \"taken\" and \"first\": {ids:?}");
    assert_eq!(ids["taken"], 101, "the stored event is untouched");
    assert_eq!(counter(app, organization, "ORGANIZATION").await, sum(&events));
}
