//! Platform staff tools over HTTP: the users and organizations
//! connections, search and filters, statistics, and the staff mutations
//! on accounts (roles, suspension, deletion) with who may do what.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{
    auth::{
        roles::OrgRole,
        users as model,
        users::{NewUser, Role},
    },
    db::schema::{audit_log, memberships, users},
};
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, create_user,
        people::{PASSWORD, register},
    },
    organizations::{add_member, create_org, field},
};

const USERS: &str = "query ($first: Int, $after: String, $search: String, $role: Role, $suspended: Boolean) {
    users(first: $first, after: $after, search: $search, role: $role, suspended: $suspended) {
        totalCount
        pageInfo { hasPreviousPage hasNextPage startCursor endCursor }
        edges { cursor node { id email } }
        nodes { id email name role suspended } } }";
const ORGANIZATIONS: &str = "query ($first: Int, $after: String, $search: String) {
    organizations(first: $first, after: $after, search: $search) {
        totalCount pageInfo { hasNextPage endCursor } nodes { id name slug viewerRole owner { id } } } }";
const USER: &str = "query ($id: ID!) { user(id: $id) { id email suspended } }";
const STATS: &str = "{ stats { users activeUsersLast30Days organizations activeApiKeys tokensThisMonth
    organizationsByPlan { plan { key } organizations } } }";
const SET_ROLE: &str = "mutation ($id: ID!, $role: Role!) { setUserRole(userId: $id, role: $role) { id role } }";
const SUSPEND: &str =
    "mutation ($id: ID!, $reason: String) { suspendUser(userId: $id, reason: $reason) { id suspended } }";
const UNSUSPEND: &str = "mutation ($id: ID!) { unsuspendUser(userId: $id) { id suspended } }";
const DELETE_USER: &str = "mutation ($id: ID!) { deleteUser(userId: $id) }";
const ME: &str = "{ me { id } }";
const LOGIN: &str = "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }";
const REFRESH: &str = "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken } }";

/// Inserts a user with a name and creation time of our choosing.
async fn insert_user(app: &TestApp, email: &str, name: &str, created_at: chrono::DateTime<chrono::Utc>) -> Uuid {
    model::insert(
        &mut *app.db().await,
        &NewUser {
            id: Uuid::now_v7(),
            email,
            name,
            password_hash: Some("!"),
            role: Role::User,
            email_verified_at: None,
            created_at,
            updated_at: created_at,
        },
    )
    .await
    .expect("inserting a user")
    .id
}

/// A staff member with a session.
async fn staff(app: &TestApp, email: &str, role: Role) -> (Uuid, String) {
    let id = create_user(app, email, role).await;
    (id, app.token_for(id).await)
}

fn ids(connection: &Value) -> Vec<String> {
    connection["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn login(app: &TestApp, email: &str) -> GqlResponse {
    app.graphql(LOGIN, json!({ "input": { "email": email, "password": PASSWORD } }))
        .await
}

#[tokio::test]
async fn staff_walk_every_user_page_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let (_, token) = staff(&app, "admin@staff.test", Role::Admin).await;
    // Three users share one creation time: the id breaks the tie.
    let now = app.state.now();
    for n in 0..7 {
        let created_at = now + chrono::Duration::seconds(if n < 3 { 1 } else { n });
        insert_user(&app, &format!("user{n}@example.com"), "Someone", created_at).await;
    }
    let mut conn = app.db().await;
    let mut in_order: Vec<(chrono::DateTime<chrono::Utc>, Uuid)> = users::table
        .select((users::created_at, users::id))
        .load(&mut conn)
        .await
        .unwrap();
    drop(conn);
    in_order.sort();
    let expected: Vec<String> = in_order.iter().map(|(_, id)| id.to_string()).collect();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = app
            .graphql_as(&token, USERS, json!({ "first": 3, "after": after }))
            .await;
        let users = page.data()["users"].clone();
        assert_eq!(users["totalCount"], 8);
        assert_eq!(users["pageInfo"]["hasPreviousPage"], after.is_some());
        let edges: Vec<String> = users["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(edges, ids(&users), "edges and nodes agree");
        assert_eq!(
            users["pageInfo"]["endCursor"],
            users["edges"].as_array().unwrap().last().unwrap()["cursor"]
        );
        seen.extend(ids(&users));
        pages += 1;
        if users["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = users["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        assert!(pages < 10, "the walk does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every user once, oldest first");

    // No `first`: the default page; a huge one is capped, a negative one refused.
    let all = app.graphql_as(&token, USERS, json!({ "first": 5000 })).await;
    assert_eq!(ids(&all.data()["users"]).len(), 8);
    let negative = app.graphql_as(&token, USERS, json!({ "first": -1 })).await;
    assert_eq!(negative.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&negative), Some("first"));
    let forged = app
        .graphql_as(&token, USERS, json!({ "after": "bm90IGEgY3Vyc29y" }))
        .await;
    assert_eq!(forged.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&forged), Some("after"));
}

/// The ids `users(search:)` finds, sorted.
async fn search_ids(app: &TestApp, token: &str, text: &str) -> Vec<String> {
    let found = app.graphql_as(token, USERS, json!({ "search": text })).await;
    let mut found = ids(&found.data()["users"]);
    found.sort();
    found
}

#[tokio::test]
async fn user_search_is_case_insensitive_over_email_and_name_and_filters_combine() {
    let app = TestApp::spawn().await;
    let (_, token) = staff(&app, "root@staff.test", Role::Admin).await;
    let now = app.state.now();
    let ada = insert_user(&app, "ada@example.com", "Countess Lovelace", now).await;
    let grace = insert_user(&app, "grace@navy.test", "Grace ADA Hopper", now).await;
    let under = insert_user(&app, "under_score@example.com", "Percent 100% Sure", now).await;
    let support = create_user(&app, "helper@staff.test", Role::Support).await;
    let sorted = |mut ids: Vec<Uuid>| {
        ids.sort();
        ids.into_iter().map(|id| id.to_string()).collect::<Vec<_>>()
    };
    let search = |text: &'static str| search_ids(&app, &token, text);
    assert_eq!(search("aDa").await, sorted(vec![ada, grace]), "email or name, any case");
    assert_eq!(search("NAVY").await, sorted(vec![grace]));
    assert_eq!(search("  lovelace ").await, sorted(vec![ada]));
    // LIKE's wildcards match only themselves.
    assert_eq!(search("_").await, sorted(vec![under]));
    assert_eq!(search("0%").await, sorted(vec![under]));
    assert_eq!(search("%").await, sorted(vec![under]));
    assert!(search("nobody-here").await.is_empty());

    let role = app.graphql_as(&token, USERS, json!({ "role": "SUPPORT" })).await;
    assert_eq!(ids(&role.data()["users"]), [support.to_string()]);
    assert_eq!(role.data()["users"]["totalCount"], 1);

    let suspended = app
        .graphql_as(&token, SUSPEND, json!({ "id": grace, "reason": "spam" }))
        .await;
    assert_eq!(suspended.data()["suspendUser"]["suspended"], true);
    let only_suspended = app
        .graphql_as(&token, USERS, json!({ "suspended": true, "search": "ada" }))
        .await;
    assert_eq!(ids(&only_suspended.data()["users"]), [grace.to_string()]);
    let active_adas = app
        .graphql_as(&token, USERS, json!({ "suspended": false, "search": "ada" }))
        .await;
    assert_eq!(ids(&active_adas.data()["users"]), [ada.to_string()]);
    assert_eq!(active_adas.data()["users"]["totalCount"], 1);
}

/// One line of EXPLAIN's output.
#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

#[tokio::test]
async fn search_is_served_by_trigram_indexes() {
    let app = TestApp::spawn().await;
    let mut conn = app.db().await;
    // Enough rows, vacuumed and analyzed, for the planner to cost the
    // indexes as it would in production.
    for statement in [
        "INSERT INTO users (id, email, name, created_at, updated_at)
         SELECT gen_random_uuid(), 'user' || g || '@example.com', 'Person ' || md5(g::text), now(), now()
         FROM generate_series(1, 5000) g",
        "INSERT INTO organizations (id, name, slug, created_at, updated_at)
         SELECT gen_random_uuid(), 'Team ' || md5(g::text), 'team-' || g, now(), now()
         FROM generate_series(1, 5000) g",
        "VACUUM ANALYZE users",
        "VACUUM ANALYZE organizations",
    ] {
        diesel::sql_query(statement).execute(&mut conn).await.unwrap();
    }
    // The planner picks the trigram indexes on its own (a B-tree cannot
    // answer ILIKE '%text%'; without them this is a scan of every row).
    let mut plans = Vec::new();
    for query in [
        "EXPLAIN SELECT id FROM users
         WHERE deleted_at IS NULL AND (email ILIKE '%lovelace%' OR name ILIKE '%lovelace%')",
        "EXPLAIN SELECT id FROM organizations WHERE name ILIKE '%rockets%' OR slug ILIKE '%rockets%'",
    ] {
        let lines: Vec<PlanLine> = diesel::sql_query(query).load(&mut conn).await.unwrap();
        plans.push(lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n"));
    }
    for (plan, indexes) in plans.iter().zip([
        ["users_email_trgm_idx", "users_name_trgm_idx"],
        ["organizations_name_trgm_idx", "organizations_slug_trgm_idx"],
    ]) {
        for index in indexes {
            assert!(plan.contains(index), "{index} not used:\n{plan}");
        }
    }
}

#[tokio::test]
async fn staff_list_every_organization_and_see_them_as_staff() {
    let app = TestApp::spawn().await;
    let (_, token) = staff(&app, "support@staff.test", Role::Support).await;
    let ada = register(&app, "ada@example.com").await;
    let acme = create_org(&app, &ada.access, "ACME Rockets").await;
    let rockets = create_org(&app, &ada.access, "Moon Works").await;

    let all = app.graphql_as(&token, ORGANIZATIONS, json!({ "first": 2 })).await;
    let all = all.data()["organizations"].clone();
    assert_eq!(all["totalCount"], 3, "Ada's personal organization and two teams");
    assert_eq!(all["pageInfo"]["hasNextPage"], true);
    let rest = app
        .graphql_as(
            &token,
            ORGANIZATIONS,
            json!({ "first": 2, "after": all["pageInfo"]["endCursor"] }),
        )
        .await;
    let mut listed = ids(&all);
    listed.extend(ids(&rest.data()["organizations"]));
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1..], [acme.to_string(), rockets.to_string()], "oldest first");
    for node in all["nodes"].as_array().unwrap() {
        assert_eq!(node["viewerRole"], Value::Null, "staff are not members");
        assert_eq!(node["owner"]["id"], ada.user_id.to_string());
    }

    let found = app.graphql_as(&token, ORGANIZATIONS, json!({ "search": "acme" })).await;
    assert_eq!(ids(&found.data()["organizations"]), [acme.to_string()]);
    let by_slug = app
        .graphql_as(&token, ORGANIZATIONS, json!({ "search": "MOON-WORKS" }))
        .await;
    assert_eq!(ids(&by_slug.data()["organizations"]), [rockets.to_string()]);
    assert_eq!(by_slug.data()["organizations"]["totalCount"], 1);
}

#[tokio::test]
async fn people_who_are_not_staff_get_nothing_of_the_staff_tools() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let (_, support) = staff(&app, "support@staff.test", Role::Support).await;
    for query in [
        "{ users { totalCount } }",
        "{ organizations { totalCount } }",
        "{ stats { users } }",
        "{ auditLog { totalCount } }",
    ] {
        let refused = app.graphql_as(&ada.access, query, json!({})).await;
        assert_eq!(refused.error_code(), Some("FORBIDDEN"), "{query}: {}", refused.body);
        assert_eq!(refused.body["data"], Value::Null);
        let anonymous = app.graphql(query, json!({})).await;
        assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"), "{query}");
    }
    for (id, name) in [(bob.user_id, "bob"), (ada.user_id, "ada")] {
        let mutation = app.graphql_as(&ada.access, SUSPEND, json!({ "id": id })).await;
        assert_eq!(mutation.error_code(), Some("FORBIDDEN"), "suspending {name}");
    }

    // `user`: oneself, or anyone for staff; null otherwise.
    let own = app.graphql_as(&ada.access, USER, json!({ "id": ada.user_id })).await;
    assert_eq!(own.data()["user"]["email"], "ada@example.com");
    let other = app.graphql_as(&ada.access, USER, json!({ "id": bob.user_id })).await;
    assert_eq!(other.data()["user"], Value::Null);
    let anonymous = app.graphql(USER, json!({ "id": bob.user_id })).await;
    assert_eq!(anonymous.data()["user"], Value::Null);
    let by_staff = app.graphql_as(&support, USER, json!({ "id": bob.user_id })).await;
    assert_eq!(by_staff.data()["user"]["email"], "bob@example.com");
    let unknown = app.graphql_as(&support, USER, json!({ "id": Uuid::now_v7() })).await;
    assert_eq!(unknown.data()["user"], Value::Null);
}

/// An audit entry as these tests look at it: action, actor, organization,
/// address and target type.
type StaffEntry = (String, Option<Uuid>, Option<Uuid>, Option<String>, Option<String>);

#[tokio::test]
async fn support_reads_and_suspends_but_only_admins_change_roles_unsuspend_and_delete() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = staff(&app, "admin@staff.test", Role::Admin).await;
    let (support_id, support) = staff(&app, "support@staff.test", Role::Support).await;
    let user = create_user(&app, "someone@example.com", Role::User).await;

    assert_eq!(
        app.graphql_as(&support, USERS, json!({})).await.data()["users"]["totalCount"],
        3
    );
    let suspended = app
        .graphql_as(&support, SUSPEND, json!({ "id": user, "reason": "chargebacks" }))
        .await;
    assert_eq!(suspended.data()["suspendUser"]["suspended"], true);
    for (query, vars) in [
        (SET_ROLE, json!({ "id": user, "role": "ADMIN" })),
        (SET_ROLE, json!({ "id": support_id, "role": "ADMIN" })),
        (UNSUSPEND, json!({ "id": user })),
        (DELETE_USER, json!({ "id": user })),
    ] {
        let refused = app.graphql_as(&support, query, vars).await;
        assert_eq!(refused.error_code(), Some("FORBIDDEN"), "{query}");
    }
    let on_admin = app.graphql_as(&support, SUSPEND, json!({ "id": admin_id })).await;
    assert_eq!(
        on_admin.error_code(),
        Some("FORBIDDEN"),
        "SUPPORT cannot suspend an ADMIN"
    );
    let on_self = app.graphql_as(&support, SUSPEND, json!({ "id": support_id })).await;
    assert_eq!(on_self.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&on_self), Some("userId"));
    let unknown = app.graphql_as(&support, SUSPEND, json!({ "id": Uuid::now_v7() })).await;
    assert_eq!(unknown.error_code(), Some("NOT_FOUND"));

    // The admin can do all of it.
    let promoted = app
        .graphql_as(&admin, SET_ROLE, json!({ "id": user, "role": "SUPPORT" }))
        .await;
    assert_eq!(promoted.data()["setUserRole"]["role"], "SUPPORT");
    let unsuspended = app.graphql_as(&admin, UNSUSPEND, json!({ "id": user })).await;
    assert_eq!(unsuspended.data()["unsuspendUser"]["suspended"], false);
    let unknown = app
        .graphql_as(&admin, SET_ROLE, json!({ "id": "not-an-id", "role": "USER" }))
        .await;
    assert_eq!(unknown.error_code(), Some("NOT_FOUND"));

    // Every staff action is on the platform's log, with its actor and address.
    let mut conn = app.db().await;
    let entries: Vec<StaffEntry> = audit_log::table
        .filter(audit_log::target_id.eq(user.to_string()))
        .order((audit_log::created_at, audit_log::id))
        .select((
            audit_log::action,
            audit_log::actor_id,
            audit_log::organization_id,
            audit_log::ip,
            audit_log::target_type,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    let localhost = Some("127.0.0.1".to_owned());
    let user_target = Some("user".to_owned());
    assert_eq!(
        entries,
        [
            (
                "user.suspended".to_owned(),
                Some(support_id),
                None,
                localhost.clone(),
                user_target.clone()
            ),
            (
                "user.role_changed".to_owned(),
                Some(admin_id),
                None,
                localhost.clone(),
                user_target.clone()
            ),
            (
                "user.unsuspended".to_owned(),
                Some(admin_id),
                None,
                localhost,
                user_target
            ),
        ]
    );
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted() {
    let app = TestApp::spawn().await;
    let (first, first_token) = staff(&app, "first@staff.test", Role::Admin).await;
    let alone = app
        .graphql_as(&first_token, SET_ROLE, json!({ "id": first, "role": "USER" }))
        .await;
    assert_eq!(alone.error_code(), Some("CONFLICT"), "{}", alone.body);

    // A second admin who is suspended does not count.
    let (second, second_token) = staff(&app, "second@staff.test", Role::Admin).await;
    app.graphql_as(&first_token, SUSPEND, json!({ "id": second }))
        .await
        .data();
    let still_alone = app
        .graphql_as(&first_token, SET_ROLE, json!({ "id": first, "role": "SUPPORT" }))
        .await;
    assert_eq!(still_alone.error_code(), Some("CONFLICT"));

    // With another active admin, stepping down works, and the former
    // admin's powers end with it.
    app.graphql_as(&first_token, UNSUSPEND, json!({ "id": second }))
        .await
        .data();
    // The suspension ended the second admin's sessions: a fresh one.
    assert_eq!(
        app.graphql_as(&second_token, ME, json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );
    let second_token = app.token_for(second).await;
    let stepped_down = app
        .graphql_as(&first_token, SET_ROLE, json!({ "id": first, "role": "SUPPORT" }))
        .await;
    assert_eq!(stepped_down.data()["setUserRole"]["role"], "SUPPORT");
    let no_more = app
        .graphql_as(&first_token, SET_ROLE, json!({ "id": second, "role": "USER" }))
        .await;
    assert_eq!(no_more.error_code(), Some("FORBIDDEN"));
    let last = app
        .graphql_as(&second_token, SET_ROLE, json!({ "id": second, "role": "USER" }))
        .await;
    assert_eq!(last.error_code(), Some("CONFLICT"));
    let last_deleted = app
        .graphql_as(&second_token, DELETE_USER, json!({ "id": second }))
        .await;
    assert_eq!(last_deleted.error_code(), Some("BAD_USER_INPUT"), "not oneself");
}

/// Polls `me` until the token is refused, for at most a second.
async fn refused_within_a_second(app: &TestApp, token: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if app.graphql_as(token, ME, json!({})).await.error_code() == Some("UNAUTHENTICATED") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn suspension_ends_every_session_at_once_and_unsuspension_lets_them_back() {
    let app = TestApp::spawn().await;
    let sibling = app.spawn_sibling().await;
    let (_, support) = staff(&app, "support@staff.test", Role::Support).await;
    let (_, admin) = staff(&app, "admin@staff.test", Role::Admin).await;
    let ada = register(&app, "ada@example.com").await;
    let laptop = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(laptop.data()["me"]["id"], ada.user_id.to_string());
    // The sibling has the session cached before the suspension.
    sibling.graphql_as(&ada.access, ME, json!({})).await.data();

    let suspended = app
        .graphql_as(&support, SUSPEND, json!({ "id": ada.user_id, "reason": "  abuse  " }))
        .await;
    assert_eq!(suspended.data()["suspendUser"]["suspended"], true);
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.error_code(), Some("UNAUTHENTICATED"), "{}", me.body);
    assert!(
        refused_within_a_second(&sibling, &ada.access).await,
        "the sibling still accepts the token"
    );
    let refreshed = app.graphql(REFRESH, json!({ "t": ada.refresh })).await;
    assert_eq!(refreshed.error_code(), Some("UNAUTHENTICATED"));
    let refused = login(&app, "ada@example.com").await;
    assert_eq!(refused.error_code(), Some("ACCOUNT_SUSPENDED"), "{}", refused.body);
    let (reason, sessions_left): (Option<String>, i64) = {
        let mut conn = app.db().await;
        let reason = users::table
            .find(ada.user_id)
            .select(users::suspension_reason)
            .first(&mut conn)
            .await
            .unwrap();
        let live = tollgate::db::schema::sessions::table
            .filter(tollgate::db::schema::sessions::user_id.eq(ada.user_id))
            .filter(tollgate::db::schema::sessions::revoked_at.is_null())
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        (reason, live)
    };
    assert_eq!(reason.as_deref(), Some("abuse"));
    assert_eq!(sessions_left, 0);

    let back = app.graphql_as(&admin, UNSUSPEND, json!({ "id": ada.user_id })).await;
    assert_eq!(back.data()["unsuspendUser"]["suspended"], false);
    let token = login(&app, "ada@example.com").await.data()["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.graphql_as(&token, ME, json!({})).await.data()["me"]["id"],
        ada.user_id.to_string()
    );
    // The sessions ended by the suspension stay ended.
    assert_eq!(
        app.graphql_as(&ada.access, ME, json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn a_suspended_persons_api_keys_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let (_, support) = staff(&app, "support@staff.test", Role::Support).await;
    let ada = register(&app, "ada@example.com").await;
    let org = create_org(&app, &ada.access, "Ada Tools").await;
    let created = app
        .graphql_as(
            &ada.access,
            "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
            json!({ "input": { "organizationId": org, "name": "ci", "scopes": ["ORG_READ"] } }),
        )
        .await;
    let secret = created.data()["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let info = "{ apiKeyInfo { organization { id } } }";
    assert_eq!(
        app.graphql_as(&secret, info, json!({})).await.data()["apiKeyInfo"]["organization"]["id"],
        org.to_string()
    );
    app.graphql_as(&support, SUSPEND, json!({ "id": ada.user_id }))
        .await
        .data();
    let refused = app.graphql_as(&secret, info, json!({})).await;
    assert_eq!(refused.error_code(), Some("UNAUTHENTICATED"), "{}", refused.body);
}

#[tokio::test]
async fn delete_user_leaves_a_tombstone_under_the_rules_of_delete_account() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = staff(&app, "admin@staff.test", Role::Admin).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let team = create_org(&app, &ada.access, "Shared Team").await;
    add_member(&app, team, bob.user_id, OrgRole::Member).await;

    let shared = app.graphql_as(&admin, DELETE_USER, json!({ "id": ada.user_id })).await;
    assert_eq!(shared.error_code(), Some("CONFLICT"), "{}", shared.body);
    assert_eq!(
        app.graphql_as(&ada.access, ME, json!({})).await.data()["me"]["id"],
        ada.user_id.to_string(),
        "nothing changed"
    );

    diesel::delete(
        memberships::table
            .filter(memberships::organization_id.eq(team))
            .filter(memberships::user_id.eq(bob.user_id)),
    )
    .execute(&mut *app.db().await)
    .await
    .unwrap();
    let deleted = app.graphql_as(&admin, DELETE_USER, json!({ "id": ada.user_id })).await;
    assert_eq!(deleted.data()["deleteUser"], true);

    // At once: her token and password are refused; staff no longer find her.
    assert_eq!(
        app.graphql_as(&ada.access, ME, json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        login(&app, "ada@example.com").await.error_code(),
        Some("UNAUTHENTICATED")
    );
    let found = app.graphql_as(&admin, USER, json!({ "id": ada.user_id })).await;
    assert_eq!(found.data()["user"], Value::Null);
    let listed = app.graphql_as(&admin, USERS, json!({ "search": "ada@" })).await;
    assert_eq!(listed.data()["users"]["totalCount"], 0);
    let again = app.graphql_as(&admin, DELETE_USER, json!({ "id": ada.user_id })).await;
    assert_eq!(again.error_code(), Some("NOT_FOUND"));

    let mut conn = app.db().await;
    let tombstone: (String, String, bool) = users::table
        .find(ada.user_id)
        .select((users::email, users::name, users::deleted_at.is_not_null()))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        tombstone,
        (
            format!("deleted-{}@deleted.invalid", ada.user_id),
            "Deleted user".to_owned(),
            true
        )
    );
    let audited: Vec<(Option<Uuid>, Option<Uuid>)> = audit_log::table
        .filter(audit_log::action.eq("user.deleted"))
        .select((audit_log::actor_id, audit_log::organization_id))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited, [(Some(admin_id), None)], "the staff actor, on no organization");
    drop(conn);

    // The email can sign up again; Bob is unaffected.
    let again = register(&app, "ada@example.com").await;
    assert_ne!(again.user_id, ada.user_id);
    assert_eq!(
        app.graphql_as(&bob.access, ME, json!({})).await.data()["me"]["id"],
        bob.user_id.to_string()
    );
}

#[tokio::test]
async fn stats_count_live_and_active_people_and_organizations_by_plan() {
    let app = TestApp::spawn().await;
    let (_, token) = staff(&app, "support@staff.test", Role::Support).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    create_org(&app, &ada.access, "Team One").await;
    login(&app, "ada@example.com").await.data();
    // Someone who signed in long ago, and someone deleted.
    let old = create_user(&app, "old@example.com", Role::User).await;
    let long_ago = app.state.now() - chrono::Duration::days(45);
    let mut conn = app.db().await;
    diesel::update(users::table.find(old))
        .set(users::last_login_at.eq(long_ago))
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    app.graphql_as(
        &bob.access,
        "mutation ($p: String!) { deleteAccount(password: $p) }",
        json!({ "p": PASSWORD }),
    )
    .await
    .data();

    let stats = app.graphql_as(&token, STATS, json!({})).await;
    let stats = stats.data()["stats"].clone();
    // support, ada, old (bob is deleted).
    assert_eq!(stats["users"], 3);
    // Ada signed in just now; old's sign-in is 45 days back.
    assert_eq!(stats["activeUsersLast30Days"], 1);
    assert_eq!(stats["organizations"], 2, "Ada's personal one and her team");
    assert_eq!(stats["activeApiKeys"], 0);
    assert_eq!(stats["tokensThisMonth"], 0);
    let by_plan: Vec<(String, i64)> = stats["organizationsByPlan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["plan"]["key"].as_str().unwrap().to_owned(),
                p["organizations"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(by_plan.contains(&("free".to_owned(), 2)), "{by_plan:?}");
    assert!(
        by_plan.contains(&("enterprise".to_owned(), 0)),
        "plans without organizations show 0"
    );
    assert_eq!(by_plan.iter().map(|(_, n)| n).sum::<i64>(), 2);
}

#[tokio::test]
async fn the_last_admin_cannot_delete_their_own_account() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada-admin@example.com").await;
    diesel::update(users::table.find(ada.user_id))
        .set(users::role.eq(Role::Admin))
        .execute(&mut app.db().await)
        .await
        .unwrap();
    const DELETE: &str = "mutation ($p: String!) { deleteAccount(password: $p) }";
    let refused = app.graphql_as(&ada.access, DELETE, json!({ "p": PASSWORD })).await;
    assert_eq!(refused.error_code(), Some("CONFLICT"), "{}", refused.body);
    assert_eq!(
        app.graphql_as(&ada.access, ME, json!({})).await.data()["me"]["id"],
        ada.user_id.to_string()
    );

    // With another ADMIN around, she may go.
    staff(&app, "second-admin@staff.test", Role::Admin).await;
    let deleted = app.graphql_as(&ada.access, DELETE, json!({ "p": PASSWORD })).await;
    assert_eq!(deleted.data()["deleteAccount"], true);
}
