//! The audit log over HTTP: the platform log for staff (every entry,
//! filters, newest first, pages) and an organization's own log for its
//! OWNER and ADMINs.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{
    auth::{roles::OrgRole, users::Role},
    db::schema::audit_log,
};
use uuid::Uuid;

use crate::{
    harness::{
        TestApp, create_user,
        people::{PASSWORD, register, register_verified},
    },
    organizations::{add_member, create_org, field},
};

const LOG: &str = "query ($first: Int, $after: String, $org: ID, $actor: ID, $action: String) {
    auditLog(first: $first, after: $after, organizationId: $org, actorId: $actor, action: $action) {
        totalCount
        pageInfo { hasPreviousPage hasNextPage endCursor }
        edges { cursor node { id } }
        nodes { id action actor { id name } organization { id name } targetType targetId ip metadata createdAt } } }";
const ORG_LOG: &str = "query ($id: ID!, $first: Int, $after: String) { organization(id: $id) {
    name
    auditLog(first: $first, after: $after) {
        totalCount pageInfo { hasPreviousPage hasNextPage endCursor }
        nodes { id action actor { id name } organization { id } createdAt } } } }";

fn nodes(connection: &Value) -> Vec<Value> {
    connection["nodes"].as_array().expect("nodes").clone()
}

fn actions(connection: &Value) -> Vec<String> {
    nodes(connection)
        .iter()
        .map(|n| n["action"].as_str().expect("action").to_owned())
        .collect()
}

/// Asserts entries come newest first (RFC 3339 in UTC with a fixed
/// precision sorts as text).
fn assert_newest_first(entries: &[Value]) {
    let times: Vec<&str> = entries.iter().map(|n| n["createdAt"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
}

/// How many entries the database holds that match.
async fn stored(app: &TestApp, organization_id: Option<Uuid>, actor_id: Option<Uuid>, action: Option<&str>) -> i64 {
    let mut query = audit_log::table.into_boxed();
    if let Some(id) = organization_id {
        query = query.filter(audit_log::organization_id.eq(id));
    }
    if let Some(id) = actor_id {
        query = query.filter(audit_log::actor_id.eq(id));
    }
    if let Some(action) = action {
        query = query.filter(audit_log::action.eq(action.to_owned()));
    }
    query.count().get_result(&mut *app.db().await).await.unwrap()
}

#[tokio::test]
async fn staff_read_every_entry_newest_first_and_filter_it() {
    let app = TestApp::spawn().await;
    let support_id = create_user(&app, "support@staff.test", Role::Support).await;
    let support = app.token_for(support_id).await;
    // Verified first, as someone about to create an organization is.
    let ada = register_verified(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    app.clock.advance(chrono::Duration::minutes(1));
    app.graphql(
        "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }",
        json!({ "input": { "email": "ada@example.com", "password": PASSWORD } }),
    )
    .await
    .data();
    app.clock.advance(chrono::Duration::minutes(1));
    let team = create_org(&app, &ada.access, "Audit Co").await;
    app.clock.advance(chrono::Duration::minutes(1));
    app.graphql_as(
        &support,
        "mutation ($id: ID!) { suspendUser(userId: $id, reason: \"spam\") { id } }",
        json!({ "id": bob.user_id }),
    )
    .await
    .data();

    let everything = app.graphql_as(&support, LOG, json!({ "first": 100 })).await;
    let everything = everything.data()["auditLog"].clone();
    let all = nodes(&everything);
    assert_eq!(everything["totalCount"], stored(&app, None, None, None).await);
    assert_eq!(all.len() as i64, stored(&app, None, None, None).await);
    assert_newest_first(&all);
    let newest = &all[0];
    assert_eq!(newest["action"], "user.suspended");
    assert_eq!(newest["actor"]["id"], support_id.to_string());
    assert_eq!(
        newest["organization"],
        Value::Null,
        "staff actions concern no organization"
    );
    assert_eq!(newest["targetType"], "user");
    assert_eq!(newest["targetId"], bob.user_id.to_string());
    assert_eq!(newest["ip"], "127.0.0.1");
    assert_eq!(newest["metadata"]["reason"], "spam");
    assert_eq!(
        actions(&everything)[..3],
        ["user.suspended", "org.created", "user.login"],
        "the last three actions, newest first"
    );

    // Pages of two walk the same list without gaps or repeats.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = app
            .graphql_as(&support, LOG, json!({ "first": 2, "after": after }))
            .await;
        let page = page.data()["auditLog"].clone();
        assert_eq!(page["pageInfo"]["hasPreviousPage"], after.is_some());
        walked.extend(nodes(&page).into_iter().map(|n| n["id"].clone()));
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(walked, all.iter().map(|n| n["id"].clone()).collect::<Vec<_>>());

    // Filters: by action, by actor, by organization, and together.
    let logins = app.graphql_as(&support, LOG, json!({ "action": "user.login" })).await;
    assert_eq!(actions(&logins.data()["auditLog"]), ["user.login"]);
    let by_ada = app
        .graphql_as(&support, LOG, json!({ "actor": ada.user_id, "first": 100 }))
        .await;
    let by_ada = by_ada.data()["auditLog"].clone();
    assert_eq!(by_ada["totalCount"], stored(&app, None, Some(ada.user_id), None).await);
    assert!(
        nodes(&by_ada)
            .iter()
            .all(|n| n["actor"]["id"] == ada.user_id.to_string()),
        "{by_ada}"
    );
    let in_team = app.graphql_as(&support, LOG, json!({ "org": team })).await;
    let in_team = in_team.data()["auditLog"].clone();
    assert_eq!(actions(&in_team), ["org.created"]);
    assert_eq!(nodes(&in_team)[0]["organization"]["name"], "Audit Co");
    let together = app
        .graphql_as(
            &support,
            LOG,
            json!({ "actor": ada.user_id, "action": "org.created", "first": 100 }),
        )
        .await;
    assert_eq!(
        together.data()["auditLog"]["totalCount"],
        stored(&app, None, Some(ada.user_id), Some("org.created")).await
    );
    assert_eq!(
        together.data()["auditLog"]["totalCount"],
        2,
        "her personal organization and her team"
    );

    let malformed = app.graphql_as(&support, LOG, json!({ "org": "nope" })).await;
    assert_eq!(malformed.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&malformed), Some("organizationId"));
    let forged = app.graphql_as(&support, LOG, json!({ "after": "garbage" })).await;
    assert_eq!(field(&forged), Some("after"));
    let member = app.graphql_as(&ada.access, LOG, json!({ "org": team })).await;
    assert_eq!(
        member.error_code(),
        Some("FORBIDDEN"),
        "the platform log is for staff, even filtered to one's own organization"
    );
}

#[tokio::test]
async fn an_organizations_log_is_for_its_owner_and_admins_and_staff() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let carol = register(&app, "carol@example.com").await;
    let dave = register(&app, "dave@example.com").await;
    let support_id = create_user(&app, "support@staff.test", Role::Support).await;
    let support = app.token_for(support_id).await;
    let team = create_org(&app, &ada.access, "Team").await;
    let other = create_org(&app, &ada.access, "Other").await;
    add_member(&app, team, bob.user_id, OrgRole::Admin).await;
    add_member(&app, team, carol.user_id, OrgRole::Member).await;
    app.clock.advance(chrono::Duration::minutes(1));
    let renamed = app
        .graphql_as(
            &bob.access,
            "mutation ($id: ID!) { updateOrganization(id: $id, input: { name: \"Team Two\" }) { name } }",
            json!({ "id": team }),
        )
        .await;
    assert_eq!(renamed.data()["updateOrganization"]["name"], "Team Two");

    let owner = app.graphql_as(&ada.access, ORG_LOG, json!({ "id": team })).await;
    let log = owner.data()["organization"]["auditLog"].clone();
    assert_eq!(
        actions(&log),
        ["org.updated", "org.created"],
        "newest first, this organization only"
    );
    assert_eq!(log["totalCount"], 2);
    assert!(nodes(&log).iter().all(|n| n["organization"]["id"] == team.to_string()));
    assert_eq!(nodes(&log)[0]["actor"]["id"], bob.user_id.to_string());
    let theirs = app.graphql_as(&ada.access, ORG_LOG, json!({ "id": other })).await;
    assert_eq!(actions(&theirs.data()["organization"]["auditLog"]), ["org.created"]);

    // A page of one, then the next.
    let first = app
        .graphql_as(&bob.access, ORG_LOG, json!({ "id": team, "first": 1 }))
        .await;
    let first = first.data()["organization"]["auditLog"].clone();
    assert_eq!(actions(&first), ["org.updated"]);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let next = app
        .graphql_as(
            &bob.access,
            ORG_LOG,
            json!({ "id": team, "first": 1, "after": first["pageInfo"]["endCursor"] }),
        )
        .await;
    let next = next.data()["organization"]["auditLog"].clone();
    assert_eq!(actions(&next), ["org.created"]);
    assert_eq!(next["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(next["pageInfo"]["hasNextPage"], false);

    // A MEMBER: the rest of the query answers, the log is null with FORBIDDEN.
    let member = app.graphql_as(&carol.access, ORG_LOG, json!({ "id": team })).await;
    assert_eq!(member.body["data"]["organization"]["name"], "Team Two");
    assert_eq!(member.body["data"]["organization"]["auditLog"], Value::Null);
    assert_eq!(member.error_code(), Some("FORBIDDEN"));
    assert_eq!(member.body["errors"][0]["path"], json!(["organization", "auditLog"]));
    assert_eq!(member.body["errors"].as_array().unwrap().len(), 1);

    // An outsider learns nothing, not even that the organization exists.
    let outsider = app.graphql_as(&dave.access, ORG_LOG, json!({ "id": team })).await;
    assert_eq!(outsider.data()["organization"], Value::Null);

    // Staff read it; a deleted actor still shows, as their tombstone.
    app.graphql_as(
        &bob.access,
        "mutation ($p: String!) { deleteAccount(password: $p) }",
        json!({ "p": PASSWORD }),
    )
    .await
    .data();
    let staff = app.graphql_as(&support, ORG_LOG, json!({ "id": team })).await;
    let log = staff.data()["organization"]["auditLog"].clone();
    assert_eq!(log["totalCount"], 2);
    assert_eq!(
        nodes(&log)[0]["actor"],
        json!({ "id": bob.user_id.to_string(), "name": "Deleted user" })
    );
}
