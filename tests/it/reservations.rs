//! Reservations, the gateway's budget guard, through the service the
//! gateway calls: concurrent calls never hold more than a budget has left,
//! a call without a limit gets what is left, refusals say whether calls in
//! flight caused them, settling records a PROXY event and releases the
//! hold exactly once, and abandoned reservations are settled by the job.

use chrono::Duration;
use serde_json::{Value, json};
use tollgate::usage::{
    authorize::UsageDenial,
    pricing::Tokens,
    record::{self, Reporter},
    reservations::{self, Ask, OutputLimit, Reservation, Reserved, Settlement},
};
use uuid::Uuid;

use crate::{
    harness::TestApp,
    usage::{Team, app_mid_month, create_key, recorded, set_free_plan, team},
};

/// The owner of `team` calling, without a key.
fn reporter(team: &Team) -> Reporter {
    Reporter {
        organization_id: team.id.parse().unwrap(),
        api_key_id: None,
        user_id: team.owner.user_id,
    }
}

fn ask<'a>(team: &Team, request_id: &'a str, prompt: i64, output: OutputLimit, app: &TestApp) -> Ask<'a> {
    Ask {
        reporter: reporter(team),
        key_token_limit: None,
        key: None,
        model: "gpt-4o",
        provider: Some("fake"),
        request_id,
        prompt_tokens: prompt,
        output,
        expires_at: app.state.now() + Duration::minutes(11),
    }
}

fn granted(answer: Reserved) -> Reservation {
    match answer {
        Reserved::Granted(reservation) => reservation,
        refused => panic!("expected a reservation, got {refused:?}"),
    }
}

async fn quota(app: &TestApp, team: &Team) -> Value {
    let response = app
        .graphql_as(
            &team.owner.access,
            "query ($id: ID!) { organization(id: $id) { quota { tokensUsed tokensReserved remaining } } }",
            json!({ "id": team.id }),
        )
        .await;
    response.data()["organization"]["quota"].clone()
}

fn settlement(reservation: &Reservation, request_id: &str, prompt: i64, completion: i64) -> Settlement {
    Settlement {
        reservation_id: reservation.id,
        model: "gpt-4o".into(),
        provider: Some("fake".into()),
        request_id: request_id.into(),
        tokens: Tokens {
            prompt,
            cached: 0,
            completion,
        },
        estimated: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_against_a_budget_for_ten_hold_at_most_ten() {
    let app = app_mid_month().await;
    set_free_plan(&app, Some(1000), None, None).await;
    let team = team(&app, "fifty.test", &[]).await;
    let ids: Vec<String> = (0..50).map(|i| format!("call-{i}")).collect();
    let answers = futures_util::future::join_all(ids.iter().map(|id| {
        let ask = ask(&team, id, 10, OutputLimit::Caller(90), &app);
        let state = app.state.clone();
        async move { (id.clone(), reservations::reserve(&state, &ask).await.unwrap()) }
    }))
    .await;
    let held: Vec<(String, Reservation)> = answers
        .iter()
        .filter_map(|(id, answer)| match answer {
            Reserved::Granted(r) => Some((id.clone(), *r)),
            Reserved::Refused { .. } => None,
        })
        .collect();
    assert_eq!(held.len(), 10, "exactly the ten that fit are held");
    for (_, answer) in &answers {
        if let Reserved::Refused { denial, in_flight } = answer {
            assert_eq!(*denial, UsageDenial::OrganizationBudget);
            assert!(*in_flight, "the budget is not spent, only held");
        }
    }
    assert_eq!(quota(&app, &team).await["tokensReserved"], 1000);

    for (id, reservation) in &held {
        let receipt = record::settle(&app.state, reporter(&team), settlement(reservation, id, 10, 90))
            .await
            .unwrap()
            .expect("recorded");
        assert_eq!(receipt.event.total_tokens, 100);
    }
    let after = quota(&app, &team).await;
    assert_eq!(after["tokensUsed"], 1000);
    assert_eq!(after["tokensReserved"], 0);
    let refused = reservations::reserve(&app.state, &ask(&team, "late", 1, OutputLimit::Caller(1), &app))
        .await
        .unwrap();
    assert_eq!(
        refused,
        Reserved::Refused {
            denial: UsageDenial::OrganizationBudget,
            in_flight: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_without_a_budget_share_their_reads_and_inserts_and_each_settles_once() {
    let app = app_mid_month().await;
    set_free_plan(&app, None, None, None).await;
    let team = team(&app, "unbounded.test", &[]).await;
    let warm = granted(
        reservations::reserve(&app.state, &ask(&team, "warm", 5, OutputLimit::Caller(5), &app))
            .await
            .unwrap(),
    );
    record::settle(&app.state, reporter(&team), settlement(&warm, "warm", 5, 5))
        .await
        .unwrap()
        .expect("recorded");

    const CALLS: u64 = 48;
    let ids: Vec<String> = (0..CALLS).map(|i| format!("free-{i}")).collect();
    let before = app.query_count();
    let held: Vec<Reservation> = futures_util::future::join_all(ids.iter().map(|id| {
        let ask = ask(&team, id, 10, OutputLimit::Caller(10), &app);
        let state = app.state.clone();
        async move { granted(reservations::reserve(&state, &ask).await.unwrap()) }
    }))
    .await;
    let statements = app.query_count() - before;
    // Alone, each would read its organization and insert its own row: 2
    // statements a call. Together they share both.
    assert!(
        statements < CALLS / 2,
        "{CALLS} concurrent reservations took {statements} statements: their reads and inserts were not shared"
    );
    assert_eq!(quota(&app, &team).await["tokensReserved"], 20 * CALLS);

    // Every call settles at once, and the second one twice: it records
    // once. (The first settlement is written alone; the two of the second
    // wait behind it, so they are written in one group.)
    let mut settlements: Vec<Settlement> = held
        .iter()
        .zip(&ids)
        .map(|(reservation, id)| settlement(reservation, id, 10, 3))
        .collect();
    settlements.insert(2, settlement(&held[1], &ids[1], 10, 3));
    let receipts = futures_util::future::join_all(settlements.into_iter().map(|settlement| {
        let state = app.state.clone();
        let reporter = reporter(&team);
        async move { record::settle(&state, reporter, settlement).await.unwrap() }
    }))
    .await;
    assert_eq!(receipts.iter().filter(|r| r.is_some()).count() as u64, CALLS);
    let after = quota(&app, &team).await;
    assert_eq!(after["tokensUsed"], 10 + 13 * CALLS);
    assert_eq!(after["tokensReserved"], 0);
}

#[tokio::test]
async fn a_call_without_a_limit_gets_what_the_budget_has_left() {
    let app = app_mid_month().await;
    set_free_plan(&app, Some(1000), None, None).await;
    let team = team(&app, "lowered.test", &[]).await;
    let call = json!({ "organizationId": team.id, "model": "gpt-4o", "promptTokens": 900, "completionTokens": 0 });
    recorded(&app, &team.owner.access, call).await;

    let first = granted(
        reservations::reserve(
            &app.state,
            &ask(&team, "a", 20, OutputLimit::Chosen { preferred: 4096 }, &app),
        )
        .await
        .unwrap(),
    );
    assert_eq!((first.output_tokens, first.send_limit), (80, Some(80)));
    let second = reservations::reserve(
        &app.state,
        &ask(&team, "b", 20, OutputLimit::Chosen { preferred: 4096 }, &app),
    )
    .await
    .unwrap();
    assert_eq!(
        second,
        Reserved::Refused {
            denial: UsageDenial::OrganizationBudget,
            in_flight: true
        },
        "nothing is left while the first call holds it"
    );
    // A caller's own limit that does not fit is refused, not lowered.
    reservations::release(&app.state, team.id.parse().unwrap(), first.id)
        .await
        .unwrap();
    let caller = reservations::reserve(&app.state, &ask(&team, "c", 20, OutputLimit::Caller(81), &app))
        .await
        .unwrap();
    assert!(
        matches!(caller, Reserved::Refused { in_flight: false, .. }),
        "{caller:?}"
    );

    // Without any budget, nothing is lowered or sent.
    set_free_plan(&app, None, None, None).await;
    let free = granted(
        reservations::reserve(
            &app.state,
            &ask(&team, "d", 20, OutputLimit::Chosen { preferred: 4096 }, &app),
        )
        .await
        .unwrap(),
    );
    assert_eq!((free.output_tokens, free.send_limit), (4096, None));
}

#[tokio::test]
async fn key_member_and_daily_limits_hold_calls_in_flight_too() {
    let app = app_mid_month().await;
    set_free_plan(&app, None, Some(2), None).await;
    let team = team(&app, "limits.test", &[]).await;
    let (key_id, _) = create_key(&app, &team.owner.access, &team.id, json!({ "tokenLimit": 50 })).await;
    let mut keyed = ask(&team, "k", 10, OutputLimit::Caller(40), &app);
    keyed.key_token_limit = Some(50);
    keyed.reporter.api_key_id = Some(key_id.parse().unwrap());
    let call = json!({ "organizationId": team.id, "model": "gpt-4o", "promptTokens": 0, "completionTokens": 0 });
    recorded(&app, &team.owner.access, call).await;
    let first = granted(reservations::reserve(&app.state, &keyed).await.unwrap());
    let mut again = keyed.clone();
    again.request_id = "k2";
    assert_eq!(
        reservations::reserve(&app.state, &again).await.unwrap(),
        Reserved::Refused {
            denial: UsageDenial::DailyRequests,
            in_flight: true
        },
        "one event today and one call in flight reach the daily limit of 2"
    );
    set_free_plan(&app, None, None, None).await;
    assert_eq!(
        reservations::reserve(&app.state, &again).await.unwrap(),
        Reserved::Refused {
            denial: UsageDenial::ApiKeyBudget,
            in_flight: true
        }
    );
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE memberships SET token_limit = 30 WHERE organization_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(team.id.parse::<Uuid>().unwrap()),
        &mut app.db().await,
    )
    .await
    .unwrap();
    let mut other = ask(&team, "m", 10, OutputLimit::Caller(10), &app);
    other.request_id = "m";
    assert_eq!(
        reservations::reserve(&app.state, &other).await.unwrap(),
        Reserved::Refused {
            denial: UsageDenial::MemberBudget,
            in_flight: true
        },
        "the member's 30 are held by the key's call"
    );
    reservations::release(&app.state, team.id.parse().unwrap(), first.id)
        .await
        .unwrap();
    granted(reservations::reserve(&app.state, &other).await.unwrap());
}

#[tokio::test]
async fn a_settled_call_is_a_proxy_event_recorded_once() {
    let app = app_mid_month().await;
    let team = team(&app, "settle.test", &[]).await;
    let reservation = granted(
        reservations::reserve(&app.state, &ask(&team, "req-1", 30, OutputLimit::Caller(70), &app))
            .await
            .unwrap(),
    );
    assert_eq!(quota(&app, &team).await["tokensReserved"], 100);
    let receipt = record::settle(&app.state, reporter(&team), settlement(&reservation, "req-1", 25, 12))
        .await
        .unwrap()
        .expect("recorded");
    assert!(!receipt.duplicate);
    let response = app
        .graphql_as(
            &team.owner.access,
            "query ($id: ID!) { organization(id: $id) { quota { tokensUsed tokensReserved }
               usageEvents(first: 5) { nodes { model promptTokens completionTokens source estimated provider requestId } } } }",
            json!({ "id": team.id }),
        )
        .await;
    let organization = &response.data()["organization"];
    assert_eq!(organization["quota"], json!({ "tokensUsed": 37, "tokensReserved": 0 }));
    assert_eq!(
        organization["usageEvents"]["nodes"],
        json!([{ "model": "gpt-4o", "promptTokens": 25, "completionTokens": 12, "source": "PROXY",
                 "estimated": false, "provider": "fake", "requestId": "req-1" }])
    );
    // A second settlement of the same reservation records nothing.
    let again = record::settle(&app.state, reporter(&team), settlement(&reservation, "req-1", 25, 12))
        .await
        .unwrap();
    assert!(again.is_none());
}

#[tokio::test]
async fn an_abandoned_reservation_is_settled_by_the_job_as_its_prompt() {
    let app = app_mid_month().await;
    let team = team(&app, "expiry.test", &[]).await;
    let reservation = granted(
        reservations::reserve(&app.state, &ask(&team, "lost", 40, OutputLimit::Caller(500), &app))
            .await
            .unwrap(),
    );
    assert_eq!(
        reservations::settle_expired_once(&app.state).await.unwrap(),
        0,
        "not yet expired"
    );
    app.clock.advance(Duration::minutes(12));
    assert_eq!(reservations::settle_expired_once(&app.state).await.unwrap(), 1);
    let response = app
        .graphql_as(
            &app.token_for(team.owner.user_id).await,
            "query ($id: ID!) { organization(id: $id) { quota { tokensUsed tokensReserved }
               usageEvents(first: 5) { nodes { promptTokens completionTokens source estimated requestId } } } }",
            json!({ "id": team.id }),
        )
        .await;
    let organization = &response.data()["organization"];
    assert_eq!(organization["quota"], json!({ "tokensUsed": 40, "tokensReserved": 0 }));
    assert_eq!(
        organization["usageEvents"]["nodes"],
        json!([{ "promptTokens": 40, "completionTokens": 0, "source": "PROXY", "estimated": true, "requestId": "lost" }])
    );
    // The instance that held it, back late, records nothing twice.
    let late = record::settle(&app.state, reporter(&team), settlement(&reservation, "lost", 40, 300))
        .await
        .unwrap();
    assert!(late.is_none());
}
