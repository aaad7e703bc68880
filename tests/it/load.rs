//! Many requests at once on one instance: the pool is shared, never
//! deadlocked, and nothing is lost or counted twice.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use serde_json::json;
use tollgate::db::schema::usage_counters;
use uuid::Uuid;

use crate::{
    harness::TestApp,
    usage::{create_key, mid_month, record, team},
};

/// More concurrent reports than the pool has connections (16).
const CONCURRENT: i64 = 64;

/// The organization's counter: (tokens, requests), over every window.
async fn organization_counter(app: &TestApp, organization: Uuid) -> (i64, i64) {
    let rows: Vec<(i64, i64)> = usage_counters::table
        .filter(usage_counters::organization_id.eq(organization))
        .filter(usage_counters::subject_kind.eq("ORGANIZATION"))
        .select((usage_counters::tokens, usage_counters::requests))
        .load(&mut app.db().await)
        .await
        .unwrap();
    rows.into_iter()
        .fold((0, 0), |(t, r), (tokens, requests)| (t + tokens, r + requests))
}

/// Without Redis every recording used to hold its connection while it
/// asked the pool for a second one to NOTIFY through: 16 at once took
/// the whole pool and stalled until the pool's wait ran out.
#[tokio::test]
async fn sixty_four_concurrent_reports_on_one_instance_all_complete_with_and_without_redis() {
    for use_redis in [false, true] {
        let app = TestApp::spawn_with_redis(use_redis).await;
        app.clock.set(mid_month());
        let team = team(&app, &format!("load-{use_redis}.test"), &[]).await;
        let (_, secret) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
        let reports = (0..CONCURRENT).map(|n| {
            let input = json!({ "model": "gpt-4o", "promptTokens": 100 + n, "completionTokens": 10 });
            let (app, secret) = (&app, &secret);
            async move { record(app, secret, input).await }
        });
        for (n, response) in join_all(reports).await.into_iter().enumerate() {
            assert!(
                response.body.get("errors").is_none(),
                "report {n} (redis: {use_redis}) failed: {}",
                response.body
            );
        }
        let expected_tokens: i64 = (0..CONCURRENT).map(|n| 110 + n).sum();
        assert_eq!(
            organization_counter(&app, team.id.parse().unwrap()).await,
            (expected_tokens, CONCURRENT),
            "redis: {use_redis}"
        );
    }
}
