//! What usage events point at (organization, key, member) holds as a
//! foreign key made it hold, now that triggers check it once per statement
//! (migration `usage_event_references`): unknown ids are refused with the
//! foreign keys' error, deletions cascade or are refused, and a deletion
//! racing a recording waits for it and then takes its events along.

use std::time::Duration;

use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error as DieselError},
    sql_types::{Nullable, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use tollgate::db::schema::usage_events;
use uuid::Uuid;

use crate::{
    harness::TestApp,
    usage::{app_mid_month, create_key, recorded, team},
};

/// The organization's events, counted.
async fn events_of(app: &TestApp, organization: Uuid) -> i64 {
    usage_events::table
        .filter(usage_events::organization_id.eq(organization))
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap()
}

/// Inserts one event by plain SQL, as an operator would.
async fn insert_event(
    conn: &mut AsyncPgConnection,
    organization: Uuid,
    key: Option<Uuid>,
    user: Option<Uuid>,
) -> Result<usize, DieselError> {
    diesel::sql_query(
        "INSERT INTO usage_events (id, organization_id, api_key_id, user_id, model, prompt_tokens, cached_tokens,
             completion_tokens, total_tokens, cost_micro_usd, priced, occurred_at, created_at)
         VALUES (gen_random_uuid(), $1, $2, $3, 'gpt-4o', 10, 0, 5, 15, 0, false, now(), now())",
    )
    .bind::<SqlUuid, _>(organization)
    .bind::<Nullable<SqlUuid>, _>(key)
    .bind::<Nullable<SqlUuid>, _>(user)
    .execute(conn)
    .await
}

/// The constraint a refusal names, when it is a foreign key's.
fn violated(result: Result<usize, DieselError>) -> Option<String> {
    match result {
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)) => {
            info.constraint_name().map(str::to_owned)
        }
        _ => None,
    }
}

#[tokio::test]
async fn deleting_an_organization_deletes_its_events_with_and_without_a_key() {
    let app = app_mid_month().await;
    let team = team(&app, "references.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let (_, secret) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let call = json!({ "organizationId": team.id, "model": "gpt-4o", "promptTokens": 10, "completionTokens": 5 });
    recorded(&app, &secret, call.clone()).await;
    recorded(&app, &team.owner.access, call).await;
    assert_eq!(events_of(&app, organization).await, 2);

    let deleted = app
        .graphql_as(
            &team.owner.access,
            "mutation ($id: ID!) { deleteOrganization(id: $id) }",
            json!({ "id": team.id }),
        )
        .await;
    assert_eq!(deleted.data()["deleteOrganization"], true);
    assert_eq!(events_of(&app, organization).await, 0);
}

#[tokio::test]
async fn events_must_point_at_an_existing_organization_key_and_member() {
    let app = app_mid_month().await;
    let team = team(&app, "unknown-ids.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let user = team.owner.user_id;
    let (key, _) = create_key(&app, &team.owner.access, &team.id, json!({})).await;
    let key: Uuid = key.parse().unwrap();
    let mut conn = app.db().await;

    let refused = insert_event(&mut conn, Uuid::now_v7(), None, None).await;
    assert_eq!(violated(refused).as_deref(), Some("usage_events_organization_id_fkey"));
    let refused = insert_event(&mut conn, organization, Some(Uuid::now_v7()), Some(user)).await;
    assert_eq!(violated(refused).as_deref(), Some("usage_events_api_key_id_fkey"));
    let refused = insert_event(&mut conn, organization, Some(key), Some(Uuid::now_v7())).await;
    assert_eq!(violated(refused).as_deref(), Some("usage_events_user_id_fkey"));
    assert_eq!(events_of(&app, organization).await, 0);

    assert_eq!(
        insert_event(&mut conn, organization, Some(key), Some(user))
            .await
            .unwrap(),
        1
    );
    let moved = diesel::sql_query("UPDATE usage_events SET user_id = $1")
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .execute(&mut conn)
        .await;
    assert_eq!(violated(moved).as_deref(), Some("usage_events_user_id_fkey"));

    // Deleting the key takes its events along; a user with events is kept
    // (the server tombstones accounts instead): one with nothing else
    // pointing at it, so the refusal is the events'.
    diesel::sql_query("DELETE FROM api_keys WHERE id = $1")
        .bind::<SqlUuid, _>(key)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(events_of(&app, organization).await, 0);
    let bare = Uuid::now_v7();
    diesel::sql_query("INSERT INTO users (id, email, name, created_at, updated_at) VALUES ($1, 'bare@unknown-ids.test', 'Bare', now(), now())")
        .bind::<SqlUuid, _>(bare)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        insert_event(&mut conn, organization, None, Some(bare)).await.unwrap(),
        1
    );
    let kept = diesel::sql_query("DELETE FROM users WHERE id = $1")
        .bind::<SqlUuid, _>(bare)
        .execute(&mut conn)
        .await;
    assert_eq!(violated(kept).as_deref(), Some("usage_events_user_id_fkey"));
}

/// The triggers lock what they check until the writer commits, as a
/// foreign key does: an organization deleted while a recording is in
/// flight goes only after it, events included, and never leaves events
/// behind that point at nothing.
#[tokio::test]
async fn a_deletion_racing_a_recording_waits_for_it_and_takes_its_events() {
    let app = app_mid_month().await;
    let team = team(&app, "race.test", &[]).await;
    let organization: Uuid = team.id.parse().unwrap();
    let mut writer = app.db().await;
    diesel::sql_query("BEGIN").execute(&mut writer).await.unwrap();
    insert_event(&mut writer, organization, None, Some(team.owner.user_id))
        .await
        .unwrap();

    let deleter = {
        let pool = app.state.pool().clone();
        tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            diesel::sql_query("DELETE FROM organizations WHERE id = $1")
                .bind::<SqlUuid, _>(organization)
                .execute(&mut conn)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!deleter.is_finished(), "the deletion did not wait for the recording");
    diesel::sql_query("COMMIT").execute(&mut writer).await.unwrap();
    assert_eq!(deleter.await.unwrap().unwrap(), 1);
    assert_eq!(events_of(&app, organization).await, 0);

    // The other way round: the recording comes after the deletion and is
    // refused.
    let refused = insert_event(&mut writer, organization, None, None).await;
    assert_eq!(violated(refused).as_deref(), Some("usage_events_organization_id_fkey"));
}
