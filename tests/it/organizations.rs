//! Organizations and roles over HTTP: creating, changing and deleting
//! organizations, member roles and budgets, removal, leaving and transfer
//! of ownership, with the audit entries each change leaves.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{
    auth::{
        membership_events::{MEMBERSHIP_ENDED, MembershipEnded},
        roles::OrgRole,
    },
    db::schema::{audit_log, invitations, memberships, organizations, plans, subscriptions},
    orgs::{model as orgs, model::MembershipRow},
};
use uuid::Uuid;

use crate::harness::{
    GqlResponse, TestApp,
    people::{SignedIn, register, register_verified, verify_caller},
};

pub const CREATE: &str = "mutation ($input: CreateOrganizationInput!) { createOrganization(input: $input) {
    id name slug personal viewerRole owner { id } members { role user { id } } } }";
const UPDATE: &str =
    "mutation ($id: ID!, $input: UpdateOrganizationInput!) { updateOrganization(id: $id, input: $input) {
    id name slug settings } }";
const DELETE: &str = "mutation ($id: ID!) { deleteOrganization(id: $id) }";
const UPDATE_MEMBER: &str = "mutation ($org: ID!, $user: ID!, $role: OrgRole, $limit: BigInt) {
    updateMember(organizationId: $org, userId: $user, role: $role, tokenLimit: $limit) { role tokenLimit user { id } } }";
const UPDATE_ROLE_ONLY: &str = "mutation ($org: ID!, $user: ID!, $role: OrgRole) {
    updateMember(organizationId: $org, userId: $user, role: $role) { role tokenLimit } }";
const REMOVE: &str = "mutation ($org: ID!, $user: ID!) { removeMember(organizationId: $org, userId: $user) }";
const LEAVE: &str = "mutation ($org: ID!) { leaveOrganization(organizationId: $org) }";
const TRANSFER: &str = "mutation ($org: ID!, $user: ID!) { transferOwnership(organizationId: $org, userId: $user) {
    id viewerRole owner { id } members { role user { id } } } }";
const ORGANIZATION: &str = "query ($id: ID!) { organization(id: $id) { id name viewerRole } }";

/// `extensions.field` of the first error.
pub fn field(response: &GqlResponse) -> Option<&str> {
    response.body["errors"][0]["extensions"]["field"].as_str()
}

/// Creates a team organization through the API; returns its id.
pub async fn create_org(app: &TestApp, token: &str, name: &str) -> Uuid {
    verify_caller(app, token).await;
    let created = app
        .graphql_as(token, CREATE, json!({ "input": { "name": name } }))
        .await;
    created.data()["createOrganization"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("organization id")
}

/// Puts `user_id` into the organization with `role`, straight in the
/// database (how they got there is the invitation tests' business).
pub async fn add_member(app: &TestApp, organization_id: Uuid, user_id: Uuid, role: OrgRole) {
    let now = app.state.now();
    orgs::insert_membership(
        &mut *app.db().await,
        &MembershipRow {
            organization_id,
            user_id,
            role,
            token_limit: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .expect("adding a member");
}

/// The personal organization of a user.
pub async fn personal_org(app: &TestApp, user_id: Uuid) -> Uuid {
    organizations::table
        .filter(organizations::personal_user_id.eq(user_id))
        .select(organizations::id)
        .first(&mut app.db().await)
        .await
        .expect("a personal organization")
}

/// The audit actions recorded in an organization, oldest first.
pub async fn audit_actions(app: &TestApp, organization_id: Uuid) -> Vec<String> {
    audit_log::table
        .filter(audit_log::organization_id.eq(organization_id))
        .order((audit_log::created_at, audit_log::id))
        .select(audit_log::action)
        .load(&mut app.db().await)
        .await
        .expect("audit entries")
}

/// The roles by user in an organization, from the database.
async fn roles(app: &TestApp, organization_id: Uuid) -> Vec<(Uuid, String)> {
    memberships::table
        .filter(memberships::organization_id.eq(organization_id))
        .order(memberships::role)
        .select((memberships::user_id, memberships::role))
        .load(&mut app.db().await)
        .await
        .expect("memberships")
}

/// An owner, an admin, a member and an outsider around one team.
struct Team {
    app: TestApp,
    org: Uuid,
    owner: SignedIn,
    admin: SignedIn,
    member: SignedIn,
    outsider: SignedIn,
}

impl Team {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let owner = register(&app, "owner@example.com").await;
        let admin = register(&app, "admin@example.com").await;
        let member = register(&app, "member@example.com").await;
        let outsider = register(&app, "outsider@example.com").await;
        let org = create_org(&app, &owner.access, "Acme").await;
        add_member(&app, org, admin.user_id, OrgRole::Admin).await;
        add_member(&app, org, member.user_id, OrgRole::Member).await;
        Self {
            app,
            org,
            owner,
            admin,
            member,
            outsider,
        }
    }

    async fn as_(&self, who: &SignedIn, query: &str, variables: Value) -> GqlResponse {
        self.app.graphql_as(&who.access, query, variables).await
    }
}

#[tokio::test]
async fn a_new_organization_is_owned_by_its_creator_on_the_free_plan() {
    let app = TestApp::spawn().await;
    let ada = register_verified(&app, "ada@example.com").await;
    let created = app
        .graphql_as(
            &ada.access,
            CREATE,
            json!({ "input": { "name": "  Acme Labs, Inc. " } }),
        )
        .await;
    let org = &created.data()["createOrganization"];
    assert_eq!(org["name"], "Acme Labs, Inc.");
    assert_eq!(org["slug"], "acme-labs-inc");
    assert_eq!(org["personal"], false);
    assert_eq!(org["viewerRole"], "OWNER");
    assert_eq!(org["owner"]["id"], ada.user_id.to_string());
    assert_eq!(
        org["members"],
        json!([{ "role": "OWNER", "user": { "id": ada.user_id.to_string() } }])
    );
    let id: Uuid = org["id"].as_str().unwrap().parse().unwrap();

    let plan: String = subscriptions::table
        .inner_join(plans::table)
        .filter(subscriptions::organization_id.eq(id))
        .select(plans::key)
        .first(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(plan, "free");
    assert_eq!(audit_actions(&app, id).await, ["org.created"]);

    let mine = app
        .graphql_as(
            &ada.access,
            "{ me { memberships { role organization { slug personal } } } }",
            json!({}),
        )
        .await;
    let memberships = mine.data()["me"]["memberships"].as_array().unwrap().clone();
    assert_eq!(memberships.len(), 2, "the personal organization and the new one");
    assert!(
        memberships
            .contains(&json!({ "role": "OWNER", "organization": { "slug": "acme-labs-inc", "personal": false } }))
    );

    let anonymous = app.graphql(CREATE, json!({ "input": { "name": "Nope" } })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn slugs_are_checked_unique_and_made_up_when_absent() {
    let app = TestApp::spawn().await;
    let ada = register_verified(&app, "ada@example.com").await;
    let bob = register_verified(&app, "bob@example.com").await;
    let create = |token: String, input: Value| {
        let app = &app;
        async move { app.graphql_as(&token, CREATE, json!({ "input": input })).await }
    };

    let chosen = create(ada.access.clone(), json!({ "name": "Acme", "slug": " ACME " })).await;
    assert_eq!(chosen.data()["createOrganization"]["slug"], "acme");

    let taken = create(bob.access.clone(), json!({ "name": "Other", "slug": "acme" })).await;
    assert_eq!(taken.error_code(), Some("CONFLICT"), "{}", taken.body);
    assert_eq!(field(&taken), Some("slug"));

    // Without a slug, a taken one gets a short random tail instead of failing.
    let derived = create(bob.access.clone(), json!({ "name": "Acme" })).await;
    let slug = derived.data()["createOrganization"]["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(slug.starts_with("acme-") && slug.len() == "acme-".len() + 6, "{slug}");

    // A reserved slug is refused when typed, worked around when derived.
    for reserved in ["admin", "graphql", "personal-0123", "settings"] {
        let refused = create(ada.access.clone(), json!({ "name": "X", "slug": reserved })).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"), "{reserved}");
        assert_eq!(field(&refused), Some("slug"), "{reserved}");
    }
    let from_reserved_name = create(ada.access.clone(), json!({ "name": "Admin" })).await;
    let slug = from_reserved_name.data()["createOrganization"]["slug"]
        .as_str()
        .unwrap();
    assert!(slug.starts_with("admin-"), "{slug}");
    let short_name = create(ada.access.clone(), json!({ "name": "X" })).await;
    let slug = short_name.data()["createOrganization"]["slug"].as_str().unwrap();
    assert!(slug.starts_with("x-") && slug.len() >= 3, "{slug}");

    for bad in ["ab", "-acme", "acme_labs", "acmé", &"a".repeat(41)] {
        let refused = create(ada.access.clone(), json!({ "name": "X", "slug": bad })).await;
        assert_eq!(field(&refused), Some("slug"), "{bad}: {}", refused.body);
    }
    let no_name = create(ada.access.clone(), json!({ "name": "  " })).await;
    assert_eq!(field(&no_name), Some("name"));
}

#[tokio::test]
async fn owners_and_admins_change_name_slug_and_settings() {
    let team = Team::new().await;
    let id = team.org.to_string();
    let changed = team
        .as_(
            &team.admin,
            UPDATE,
            json!({ "id": id, "input": { "name": "Acme Corp", "slug": "acme-corp", "settings": { "defaultModel": "gpt-4o" } } }),
        )
        .await;
    assert_eq!(
        changed.data()["updateOrganization"],
        json!({ "id": id, "name": "Acme Corp", "slug": "acme-corp", "settings": { "defaultModel": "gpt-4o" } })
    );
    // Omitted fields keep their values.
    let renamed = team
        .as_(&team.owner, UPDATE, json!({ "id": id, "input": { "name": "Acme" } }))
        .await;
    assert_eq!(renamed.data()["updateOrganization"]["slug"], "acme-corp");
    assert_eq!(
        renamed.data()["updateOrganization"]["settings"],
        json!({ "defaultModel": "gpt-4o" })
    );

    let member = team
        .as_(&team.member, UPDATE, json!({ "id": id, "input": { "name": "Mine" } }))
        .await;
    assert_eq!(member.error_code(), Some("FORBIDDEN"));
    let outsider = team
        .as_(&team.outsider, UPDATE, json!({ "id": id, "input": { "name": "Mine" } }))
        .await;
    let nowhere = team
        .as_(
            &team.outsider,
            UPDATE,
            json!({ "id": Uuid::now_v7().to_string(), "input": { "name": "Mine" } }),
        )
        .await;
    assert_eq!(outsider.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        outsider.body["errors"][0]["message"],
        nowhere.body["errors"][0]["message"]
    );

    let not_an_object = team
        .as_(
            &team.owner,
            UPDATE,
            json!({ "id": id, "input": { "settings": [1, 2] } }),
        )
        .await;
    assert_eq!(field(&not_an_object), Some("settings"));
    let other = create_org(&team.app, &team.outsider.access, "Taken Name").await;
    let taken = team
        .as_(
            &team.owner,
            UPDATE,
            json!({ "id": id, "input": { "slug": "taken-name" } }),
        )
        .await;
    assert_eq!(taken.error_code(), Some("CONFLICT"));
    assert_eq!(field(&taken), Some("slug"));
    assert_ne!(other, team.org);

    let actions = audit_actions(&team.app, team.org).await;
    assert_eq!(actions, ["org.created", "org.updated", "org.updated"]);
}

#[tokio::test]
async fn a_personal_organization_can_be_renamed_but_keeps_its_slug() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let personal = personal_org(&app, ada.user_id).await;
    let slug: String = organizations::table
        .find(personal)
        .select(organizations::slug)
        .first(&mut app.db().await)
        .await
        .unwrap();
    let id = personal.to_string();
    let echoed = app
        .graphql_as(
            &ada.access,
            UPDATE,
            json!({ "id": id, "input": { "name": "Ada's things", "slug": slug } }),
        )
        .await;
    assert_eq!(echoed.data()["updateOrganization"]["name"], "Ada's things");
    assert_eq!(echoed.data()["updateOrganization"]["slug"], slug.as_str());
    let new_slug = app
        .graphql_as(&ada.access, UPDATE, json!({ "id": id, "input": { "slug": "ada" } }))
        .await;
    assert_eq!(new_slug.error_code(), Some("FORBIDDEN"), "{}", new_slug.body);
}

#[tokio::test]
async fn only_the_owner_deletes_a_team_and_nothing_of_it_stays_readable() {
    let team = Team::new().await;
    let id = team.org.to_string();
    // A pending invitation (the team is at the free plan's 3 members, so
    // it goes in directly).
    let now = team.app.state.now();
    diesel::insert_into(invitations::table)
        .values((
            invitations::id.eq(Uuid::now_v7()),
            invitations::organization_id.eq(team.org),
            invitations::email.eq("new@example.com"),
            invitations::role.eq("MEMBER"),
            invitations::token_hash.eq(vec![1u8; 32]),
            invitations::invited_by.eq(team.owner.user_id),
            invitations::created_at.eq(now),
            invitations::expires_at.eq(now + chrono::Duration::days(7)),
        ))
        .execute(&mut team.app.db().await)
        .await
        .unwrap();

    let by_admin = team.as_(&team.admin, DELETE, json!({ "id": id })).await;
    assert_eq!(by_admin.error_code(), Some("FORBIDDEN"));
    let by_outsider = team.as_(&team.outsider, DELETE, json!({ "id": id })).await;
    assert_eq!(by_outsider.error_code(), Some("NOT_FOUND"));
    let personal = personal_org(&team.app, team.owner.user_id).await;
    let own_personal = team
        .as_(&team.owner, DELETE, json!({ "id": personal.to_string() }))
        .await;
    assert_eq!(own_personal.error_code(), Some("FORBIDDEN"));

    let mut events = team.app.announcements();
    let deleted = team.as_(&team.owner, DELETE, json!({ "id": id })).await;
    assert_eq!(deleted.data()["deleteOrganization"], true);

    for who in [&team.owner, &team.admin, &team.member] {
        let read = team.as_(who, ORGANIZATION, json!({ "id": id })).await;
        assert_eq!(read.data()["organization"], Value::Null);
    }
    let mut conn = team.app.db().await;
    let left: i64 = memberships::table
        .filter(memberships::organization_id.eq(team.org))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let invited: i64 = invitations::table
        .filter(invitations::organization_id.eq(team.org))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let subscribed: i64 = subscriptions::table
        .filter(subscriptions::organization_id.eq(team.org))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((left, invited, subscribed), (0, 0, 0));
    drop(conn);
    assert_eq!(
        audit_actions(&team.app, team.org).await.last().map(String::as_str),
        Some("org.deleted")
    );
    let mut ended = ended_memberships(&mut events, 3).await;
    ended.sort_by_key(|e| e.user_id);
    let mut expected: Vec<_> = [&team.owner, &team.admin, &team.member]
        .iter()
        .map(|who| MembershipEnded {
            organization_id: team.org,
            user_id: who.user_id,
        })
        .collect();
    expected.sort_by_key(|e| e.user_id);
    assert_eq!(ended, expected);
}

/// The next `count` `membership.ended` announcements, and that no more
/// come right after them.
async fn ended_memberships(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    count: usize,
) -> Vec<MembershipEnded> {
    let next_ended = async |events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>| loop {
        let (topic, payload) = events.recv().await.expect("announcements");
        if topic == MEMBERSHIP_ENDED {
            return serde_json::from_str::<MembershipEnded>(&payload).expect("a membership.ended payload");
        }
    };
    let mut ended = Vec::new();
    while ended.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(5), next_ended(events)).await;
        ended.push(next.expect("membership.ended announcements in time"));
    }
    // Announced once, not again when the instance reads its own rows.
    let again = tokio::time::timeout(Duration::from_millis(600), next_ended(events)).await;
    assert!(again.is_err(), "announced twice: {again:?}");
    ended
}

#[tokio::test]
async fn admins_change_roles_and_budgets_but_never_the_owner() {
    /// The updates below that change a budget and no role.
    const BUDGET_ONLY_CHANGES: usize = 2;
    let team = Team::new().await;
    let org = team.org.to_string();
    let vars = |user: &SignedIn, extra: Value| {
        let mut vars = json!({ "org": org, "user": user.user_id.to_string() });
        vars.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        vars
    };

    let demoted = team
        .as_(
            &team.admin,
            UPDATE_MEMBER,
            vars(&team.member, json!({ "role": "VIEWER", "limit": 50000 })),
        )
        .await;
    assert_eq!(demoted.data()["updateMember"]["role"], "VIEWER");
    assert_eq!(demoted.data()["updateMember"]["tokenLimit"], 50000);
    // An absent tokenLimit keeps the budget; an explicit null clears it.
    let kept = team
        .as_(
            &team.admin,
            UPDATE_ROLE_ONLY,
            vars(&team.member, json!({ "role": "MEMBER" })),
        )
        .await;
    assert_eq!(
        kept.data()["updateMember"],
        json!({ "role": "MEMBER", "tokenLimit": 50000 })
    );
    let cleared = team
        .as_(&team.admin, UPDATE_MEMBER, vars(&team.member, json!({ "limit": null })))
        .await;
    assert_eq!(cleared.data()["updateMember"]["tokenLimit"], Value::Null);
    let negative = team
        .as_(&team.admin, UPDATE_MEMBER, vars(&team.member, json!({ "limit": -1 })))
        .await;
    assert_eq!(field(&negative), Some("tokenLimit"));

    let make_owner = team
        .as_(
            &team.owner,
            UPDATE_MEMBER,
            vars(&team.admin, json!({ "role": "OWNER" })),
        )
        .await;
    assert_eq!(make_owner.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&make_owner), Some("role"));
    let touch_owner = team
        .as_(&team.admin, UPDATE_MEMBER, vars(&team.owner, json!({ "limit": 10 })))
        .await;
    assert_eq!(touch_owner.error_code(), Some("FORBIDDEN"));
    let demote_owner = team
        .as_(
            &team.owner,
            UPDATE_MEMBER,
            vars(&team.owner, json!({ "role": "ADMIN" })),
        )
        .await;
    assert_eq!(field(&demote_owner), Some("role"));
    let own_budget = team
        .as_(&team.owner, UPDATE_MEMBER, vars(&team.owner, json!({ "limit": 10 })))
        .await;
    assert_eq!(
        own_budget.data()["updateMember"],
        json!({ "role": "OWNER", "tokenLimit": 10, "user": { "id": team.owner.user_id.to_string() } })
    );

    let by_member = team
        .as_(
            &team.member,
            UPDATE_MEMBER,
            vars(&team.admin, json!({ "role": "VIEWER" })),
        )
        .await;
    assert_eq!(by_member.error_code(), Some("FORBIDDEN"));
    let by_outsider = team
        .as_(
            &team.outsider,
            UPDATE_MEMBER,
            vars(&team.member, json!({ "role": "VIEWER" })),
        )
        .await;
    assert_eq!(by_outsider.error_code(), Some("NOT_FOUND"));
    let not_a_member = team
        .as_(
            &team.admin,
            UPDATE_MEMBER,
            vars(&team.outsider, json!({ "role": "VIEWER" })),
        )
        .await;
    assert_eq!(not_a_member.error_code(), Some("NOT_FOUND"));

    // An ADMIN manages other ADMINs too (only the OWNER is protected).
    let other_admin = register(&team.app, "admin2@example.com").await;
    add_member(&team.app, team.org, other_admin.user_id, OrgRole::Admin).await;
    let admin_demoted = team
        .as_(
            &team.admin,
            UPDATE_MEMBER,
            vars(&other_admin, json!({ "role": "MEMBER" })),
        )
        .await;
    assert_eq!(admin_demoted.data()["updateMember"]["role"], "MEMBER");

    // Role changes are audited, and so are budget-only changes.
    let actions = audit_actions(&team.app, team.org).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "member.role_changed").count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "member.budget_changed").count(),
        BUDGET_ONLY_CHANGES,
        "{actions:?}"
    );
    let membership_read = team
        .as_(
            &team.member,
            "query ($id: ID!) { organization(id: $id) { members { role tokenLimit user { id } } } }",
            json!({ "id": org }),
        )
        .await;
    assert!(
        membership_read.data()["organization"]["members"]
            .as_array()
            .unwrap()
            .contains(&json!({ "role": "OWNER", "tokenLimit": 10, "user": { "id": team.owner.user_id.to_string() } }))
    );
}

#[tokio::test]
async fn admins_remove_anyone_but_the_owner_and_the_removed_lose_access() {
    let team = Team::new().await;
    let org = team.org.to_string();
    let remove = |user: &SignedIn| json!({ "org": org, "user": user.user_id.to_string() });

    let owner = team.as_(&team.admin, REMOVE, remove(&team.owner)).await;
    assert_eq!(owner.error_code(), Some("FORBIDDEN"));
    let by_member = team.as_(&team.member, REMOVE, remove(&team.admin)).await;
    assert_eq!(by_member.error_code(), Some("FORBIDDEN"));
    let by_outsider = team.as_(&team.outsider, REMOVE, remove(&team.member)).await;
    assert_eq!(by_outsider.error_code(), Some("NOT_FOUND"));
    let stranger = team.as_(&team.admin, REMOVE, remove(&team.outsider)).await;
    assert_eq!(stranger.error_code(), Some("NOT_FOUND"));

    let mut events = team.app.announcements();
    let removed = team.as_(&team.admin, REMOVE, remove(&team.member)).await;
    assert_eq!(removed.data()["removeMember"], true);
    let read = team.as_(&team.member, ORGANIZATION, json!({ "id": org })).await;
    assert_eq!(read.data()["organization"], Value::Null);
    let again = team.as_(&team.member, LEAVE, json!({ "org": org })).await;
    assert_eq!(again.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        ended_memberships(&mut events, 1).await,
        [MembershipEnded {
            organization_id: team.org,
            user_id: team.member.user_id
        }]
    );
    assert!(
        audit_actions(&team.app, team.org)
            .await
            .contains(&"member.removed".to_owned())
    );
}

#[tokio::test]
async fn members_leave_but_not_the_owner_nor_anyone_their_personal_organization() {
    let team = Team::new().await;
    let org = team.org.to_string();
    let mut events = team.app.announcements();
    let left = team.as_(&team.member, LEAVE, json!({ "org": org })).await;
    assert_eq!(left.data()["leaveOrganization"], true);
    assert_eq!(ended_memberships(&mut events, 1).await[0].user_id, team.member.user_id);
    let read = team.as_(&team.member, ORGANIZATION, json!({ "id": org })).await;
    assert_eq!(read.data()["organization"], Value::Null);

    let owner = team.as_(&team.owner, LEAVE, json!({ "org": org })).await;
    assert_eq!(owner.error_code(), Some("CONFLICT"), "{}", owner.body);
    let personal = personal_org(&team.app, team.member.user_id).await;
    let own = team
        .as_(&team.member, LEAVE, json!({ "org": personal.to_string() }))
        .await;
    assert_eq!(own.error_code(), Some("FORBIDDEN"));
    let outsider = team.as_(&team.outsider, LEAVE, json!({ "org": org })).await;
    assert_eq!(outsider.error_code(), Some("NOT_FOUND"));
    assert!(
        audit_actions(&team.app, team.org)
            .await
            .contains(&"member.left".to_owned())
    );
}

#[tokio::test]
async fn ownership_moves_to_a_member_and_the_old_owner_becomes_admin() {
    let team = Team::new().await;
    let org = team.org.to_string();
    let to = |user: &SignedIn| json!({ "org": org, "user": user.user_id.to_string() });

    let by_admin = team.as_(&team.admin, TRANSFER, to(&team.admin)).await;
    assert_eq!(by_admin.error_code(), Some("FORBIDDEN"));
    let to_outsider = team.as_(&team.owner, TRANSFER, to(&team.outsider)).await;
    assert_eq!(to_outsider.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&to_outsider), Some("userId"));
    let personal = personal_org(&team.app, team.owner.user_id).await;
    let own_personal = team
        .as_(
            &team.owner,
            TRANSFER,
            json!({ "org": personal.to_string(), "user": team.member.user_id.to_string() }),
        )
        .await;
    assert_eq!(own_personal.error_code(), Some("FORBIDDEN"));

    let moved = team.as_(&team.owner, TRANSFER, to(&team.member)).await;
    let organization = &moved.data()["transferOwnership"];
    assert_eq!(organization["viewerRole"], "ADMIN");
    assert_eq!(organization["owner"]["id"], team.member.user_id.to_string());
    let mut roles = roles(&team.app, team.org).await;
    roles.sort();
    let mut expected = vec![
        (team.owner.user_id, "ADMIN".to_owned()),
        (team.admin.user_id, "ADMIN".to_owned()),
        (team.member.user_id, "OWNER".to_owned()),
    ];
    expected.sort();
    assert_eq!(roles, expected);

    // The old owner can now leave; the new one cannot.
    let old_owner_leaves = team.as_(&team.owner, LEAVE, json!({ "org": org })).await;
    assert_eq!(old_owner_leaves.data()["leaveOrganization"], true);
    let new_owner_leaves = team.as_(&team.member, LEAVE, json!({ "org": org })).await;
    assert_eq!(new_owner_leaves.error_code(), Some("CONFLICT"));
    assert!(
        audit_actions(&team.app, team.org)
            .await
            .contains(&"org.owner_transferred".to_owned())
    );
}

/// A transfer to someone whose account is being deleted waits for the
/// deletion (which holds their row while it checks what they own) and is
/// then refused, so no organization is left to a deleted owner.
#[tokio::test]
async fn ownership_cannot_pass_to_an_account_being_deleted() {
    let team = Team::new().await;
    let heir = team.member.user_id;
    let mut deletion = team.app.db().await;
    diesel::sql_query("BEGIN").execute(&mut *deletion).await.unwrap();
    diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(heir)
        .execute(&mut *deletion)
        .await
        .unwrap();
    let transfer = team.as_(
        &team.owner,
        TRANSFER,
        json!({ "org": team.org.to_string(), "user": heir.to_string() }),
    );
    let delete_meanwhile = async {
        // Once the transfer waits on the heir's row (or after 5 s, when it
        // did not wait), the deletion finishes.
        team.app.wait_for_a_lock_waiter().await;
        diesel::sql_query("UPDATE users SET deleted_at = now() WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(heir)
            .execute(&mut *deletion)
            .await
            .unwrap();
        diesel::sql_query("COMMIT").execute(&mut *deletion).await.unwrap();
    };
    let (refused, ()) = tokio::join!(transfer, delete_meanwhile);
    assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&refused), Some("userId"));
    assert!(
        roles(&team.app, team.org)
            .await
            .contains(&(team.owner.user_id, "OWNER".to_owned()))
    );
}

#[tokio::test]
async fn platform_staff_who_are_not_members_cannot_manage_an_organization() {
    let team = Team::new().await;
    let staff = crate::harness::create_user(&team.app, "staff@example.com", tollgate::auth::users::Role::Admin).await;
    let token = team.app.token_for(staff).await;
    let org = team.org.to_string();
    let update = team
        .app
        .graphql_as(
            &token,
            UPDATE,
            json!({ "id": org, "input": { "name": "Staff was here" } }),
        )
        .await;
    assert_eq!(update.error_code(), Some("FORBIDDEN"));
    let remove = team
        .app
        .graphql_as(
            &token,
            REMOVE,
            json!({ "org": org, "user": team.member.user_id.to_string() }),
        )
        .await;
    assert_eq!(remove.error_code(), Some("FORBIDDEN"));
}
