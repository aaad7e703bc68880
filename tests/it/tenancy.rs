//! Tenant isolation and batching, walked from the contract itself.
//!
//! Every organization-scoped field and operation of
//! `shared/spec/schema.graphql` must have a rule in
//! `tollgate::orgs::access::RULES`, and an outsider calling it against a
//! real organization gets exactly the answer they get for an organization
//! that does not exist: no data, no hint.

use std::collections::BTreeMap;

use async_graphql::parser::types::{BaseType, FieldDefinition, InputValueDefinition, Type, TypeKind};
use serde_json::{Value, json};
use tollgate::{auth::roles::OrgRole, orgs::access::rule_of};
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp,
        people::{SignedIn, register, register_verified},
        sdl::{SdlTypes, base_name},
    },
    organizations::add_member,
};

/// The types of an SDL by name: the contract's, or the server's own.
pub struct Contract {
    types: BTreeMap<String, TypeKind>,
}

impl Contract {
    fn load() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/schema.graphql");
        let sdl = std::fs::read_to_string(&path).expect("the contract is readable");
        Self::parse(&sdl)
    }

    /// The schema the server serves (built fields only, with the
    /// descriptions the code gives them).
    pub fn served() -> Self {
        Self::parse(&tollgate::graphql::export_sdl())
    }

    fn parse(sdl: &str) -> Self {
        Self {
            types: SdlTypes::parse(sdl).types,
        }
    }

    /// The fields of an object type (none for other kinds).
    pub fn fields(&self, type_name: &str) -> Vec<FieldDefinition> {
        match self.types.get(type_name) {
            Some(TypeKind::Object(object)) => object.fields.iter().map(|f| f.node.clone()).collect(),
            _ => Vec::new(),
        }
    }

    fn input_fields(&self, type_name: &str) -> Option<Vec<InputValueDefinition>> {
        match self.types.get(type_name) {
            Some(TypeKind::InputObject(object)) => Some(object.fields.iter().map(|f| f.node.clone()).collect()),
            _ => None,
        }
    }

    /// Whether an argument of this type carries an organization id
    /// (directly, or as `organizationId` of an input object).
    fn names_an_organization(&self, argument: &InputValueDefinition) -> bool {
        if argument.name.node == "organizationId" {
            return true;
        }
        self.input_fields(base_name(&argument.ty.node))
            .is_some_and(|fields| fields.iter().any(|f| f.name.node == "organizationId"))
    }

    /// Root fields that act on one organization, as `Root.field`.
    fn organization_scoped_roots(&self) -> Vec<(String, FieldDefinition)> {
        let mut scoped = Vec::new();
        for root in ["Query", "Mutation", "Subscription"] {
            for field in self.fields(root) {
                let name = format!("{root}.{}", field.name.node);
                let by_argument = field.arguments.iter().any(|a| self.names_an_organization(&a.node));
                let by_id = matches!(
                    name.as_str(),
                    "Query.organization" | "Mutation.updateOrganization" | "Mutation.deleteOrganization"
                );
                if by_argument || by_id {
                    scoped.push((name, field));
                }
            }
        }
        scoped
    }

    /// A plausible value for a required argument or input field, with
    /// `organization` wherever an organization id goes.
    fn sample(&self, name: &str, ty: &Type, organization: &str) -> Value {
        if let BaseType::List(inner) = &ty.base {
            return json!([self.sample(name, inner, organization)]);
        }
        let base = base_name(ty);
        if let Some(fields) = self.input_fields(base) {
            let object: serde_json::Map<String, Value> = fields
                .iter()
                .filter(|f| !f.ty.node.nullable && f.default_value.is_none() || f.name.node == "organizationId")
                .map(|f| {
                    (
                        f.name.node.to_string(),
                        self.sample(&f.name.node, &f.ty.node, organization),
                    )
                })
                .collect();
            return Value::Object(object);
        }
        if let Some(TypeKind::Enum(enumeration)) = self.types.get(base) {
            return json!(enumeration.values[0].node.value.node.to_string());
        }
        match (base, name) {
            ("ID", "organizationId" | "id") => json!(organization),
            ("ID", _) => json!(Uuid::now_v7().to_string()),
            ("String", "email") => json!("someone@example.com"),
            ("String", "planKey") => json!("pro"),
            ("String", url) if url.ends_with("Url") => json!("http://localhost:3000/back"),
            ("String", _) => json!("sample"),
            ("Int" | "BigInt", _) => json!(1),
            ("Float", _) => json!(1.0),
            ("Boolean", _) => json!(true),
            ("DateTime", _) => json!("2026-11-21T00:00:00Z"),
            ("JSON", _) => json!({}),
            other => panic!("no sample for {other:?}"),
        }
    }

    /// Names of the object types.
    pub fn object_types(&self) -> Vec<&str> {
        self.types
            .iter()
            .filter(|(_, kind)| matches!(kind, TypeKind::Object(_)))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The smallest selection that reads a value of this type.
    pub fn selection(&self, ty: &Type) -> &'static str {
        match self.types.get(base_name(ty)) {
            Some(TypeKind::Object(_)) => "{ __typename }",
            _ => "",
        }
    }
}

/// `field(arg: $arg ...) { selection }` with variables for the required
/// arguments, and the operation's variable declarations.
pub fn call(contract: &Contract, field: &FieldDefinition, organization: &str) -> (String, String, Value) {
    let mut declarations = Vec::new();
    let mut arguments = Vec::new();
    let mut variables = serde_json::Map::new();
    for argument in &field.arguments {
        let argument = &argument.node;
        let required = !argument.ty.node.nullable && argument.default_value.is_none();
        if !required && !contract.names_an_organization(argument) && argument.name.node != "id" {
            continue;
        }
        let name = argument.name.node.to_string();
        declarations.push(format!("${name}: {}", argument.ty.node));
        arguments.push(format!("{name}: ${name}"));
        variables.insert(name.clone(), contract.sample(&name, &argument.ty.node, organization));
    }
    let arguments = if arguments.is_empty() {
        String::new()
    } else {
        format!("({})", arguments.join(", "))
    };
    let declarations = if declarations.is_empty() {
        String::new()
    } else {
        format!("({})", declarations.join(", "))
    };
    let body = format!("{}{arguments} {}", field.name.node, contract.selection(&field.ty.node));
    (declarations, body, Value::Object(variables))
}

/// What a client sees, minus what legitimately differs between two calls.
fn visible(response: &Value) -> Value {
    let mut response = response.clone();
    if let Some(errors) = response.get_mut("errors").and_then(Value::as_array_mut) {
        for error in errors {
            if let Some(object) = error.as_object_mut() {
                object.remove("locations");
            }
        }
    }
    response
}

struct Tenants {
    app: TestApp,
    owner: SignedIn,
    outsider: SignedIn,
    organization: String,
}

async fn tenants() -> Tenants {
    let app = TestApp::spawn().await;
    let owner = register_verified(&app, "victim@example.com").await;
    let outsider = register_verified(&app, "outsider@example.com").await;
    let created = app
        .graphql_as(
            &owner.access,
            "mutation { createOrganization(input: { name: \"Victim Corp\" }) { id } }",
            json!({}),
        )
        .await;
    let organization = created.data()["createOrganization"]["id"].as_str().unwrap().to_owned();
    Tenants {
        app,
        owner,
        outsider,
        organization,
    }
}

#[test]
fn every_organization_scoped_field_and_operation_of_the_contract_has_an_access_rule() {
    let contract = Contract::load();
    let mut names: Vec<String> = contract
        .fields("Organization")
        .iter()
        .map(|field| format!("Organization.{}", field.name.node))
        .collect();
    names.extend(contract.organization_scoped_roots().into_iter().map(|(name, _)| name));
    assert!(
        names.len() > 30,
        "the walk found the organization-scoped fields: {names:?}"
    );
    let missing: Vec<&String> = names.iter().filter(|name| rule_of(name).is_none()).collect();
    assert!(missing.is_empty(), "fields without an access rule: {missing:?}");
}

#[tokio::test]
async fn an_outsider_learns_nothing_from_any_organization_field() {
    let Tenants {
        app,
        outsider,
        organization,
        ..
    } = tenants().await;
    let contract = Contract::load();
    let missing = Uuid::now_v7().to_string();
    for field in contract.fields("Organization") {
        let (_, body, variables) = call(&contract, &field, &organization);
        let query = format!("query ($id: ID!) {{ organization(id: $id) {{ {body} }} }}");
        let mut answers = Vec::new();
        for target in [&organization, &missing] {
            let mut variables = variables.clone();
            variables["id"] = json!(target);
            let response = app.graphql_as(&outsider.access, &query, variables).await;
            assert_eq!(
                response.body["data"]["organization"],
                Value::Null,
                "Organization.{} leaked: {}",
                field.name.node,
                response.body
            );
            answers.push(visible(&response.body));
        }
        assert_eq!(
            answers[0], answers[1],
            "Organization.{} answers differ",
            field.name.node
        );
    }
}

#[tokio::test]
async fn an_outsider_gets_the_same_refusal_from_every_organization_scoped_operation() {
    let Tenants {
        app,
        outsider,
        organization,
        ..
    } = tenants().await;
    let contract = Contract::load();
    let missing = Uuid::now_v7().to_string();
    let mut walked = 0;
    for (name, field) in contract.organization_scoped_roots() {
        let (kind, _) = name.split_once('.').unwrap();
        if kind == "Subscription" {
            // Over websockets: tests/it/live_usage.rs refuses outsiders.
            continue;
        }
        let operation = if kind == "Mutation" { "mutation" } else { "query" };
        let mut answers = Vec::new();
        for target in [&organization, &missing] {
            let (declarations, body, variables) = call(&contract, &field, target);
            let query = format!("{operation} {declarations} {{ {body} }}");
            let response = app.graphql_as(&outsider.access, &query, variables).await;
            let data = &response.body["data"];
            let leaked = data.as_object().is_some_and(|d| d.values().any(|v| !v.is_null()));
            assert!(!leaked, "{name} answered an outsider: {}", response.body);
            if name != "Query.organization" {
                let code = response.error_code();
                assert!(
                    matches!(code, Some("NOT_FOUND" | "FORBIDDEN" | "BAD_USER_INPUT")),
                    "{name}: {}",
                    response.body
                );
            }
            answers.push(visible(&response.body));
        }
        assert_eq!(
            answers[0], answers[1],
            "{name} tells a real organization from a missing one"
        );
        walked += 1;
    }
    assert!(walked >= 18, "walked {walked} operations");
    // The victim's organization is untouched.
    let still = app
        .graphql_as(
            &outsider.access,
            "{ organization(slug: \"victim-corp\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(still.body["data"]["organization"], Value::Null);
}

/// `n` organizations with `n` members each; the viewer is in all of them.
async fn fixture(app: &TestApp, n: usize) -> String {
    use diesel_async::RunQueryDsl;
    let viewer = register(app, &format!("viewer{n}@example.com")).await;
    let now = app.state.now();
    let mut conn = app.db().await;
    let mut people = vec![viewer.user_id];
    for i in 1..n {
        let id = crate::harness::create_user(
            app,
            &format!("member{n}-{i}@example.com"),
            tollgate::auth::users::Role::User,
        )
        .await;
        people.push(id);
    }
    for o in 0..n {
        let organization = Uuid::now_v7();
        diesel::sql_query(
            "INSERT INTO organizations (id, name, slug, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind::<diesel::sql_types::Uuid, _>(organization)
        .bind::<diesel::sql_types::Text, _>(format!("Org {o}"))
        .bind::<diesel::sql_types::Text, _>(format!("org-{n}-{o}"))
        .bind::<diesel::sql_types::Timestamptz, _>(now)
        .execute(&mut conn)
        .await
        .unwrap();
        for (i, person) in people.iter().enumerate() {
            let role = if i == 0 { "OWNER" } else { "MEMBER" };
            diesel::sql_query(
                "INSERT INTO memberships (organization_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            )
            .bind::<diesel::sql_types::Uuid, _>(organization)
            .bind::<diesel::sql_types::Uuid, _>(*person)
            .bind::<diesel::sql_types::Text, _>(role)
            .bind::<diesel::sql_types::Timestamptz, _>(now)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    viewer.access
}

/// The fewest statements `query` took in five runs, and the five answers.
/// A batch loader flushes after a short delay; on a loaded machine a level
/// may now and then be split in two, so the fewest is what the query plan
/// costs.
async fn fewest_statements(app: &TestApp, token: &str, query: &str) -> (u64, Vec<GqlResponse>) {
    let mut fewest = u64::MAX;
    let mut responses = Vec::new();
    for _ in 0..5 {
        let before = app.query_count();
        responses.push(app.graphql_as(token, query, json!({})).await);
        fewest = fewest.min(app.query_count() - before);
    }
    (fewest, responses)
}

#[tokio::test]
async fn nested_organization_reads_cost_the_same_statements_for_5_and_for_20_organizations() {
    const NESTED: &str =
        "{ me { memberships { organization { members { user { memberships { organization { name } } } } } } } }";
    let app = TestApp::spawn().await;
    let mut counts = Vec::new();
    for n in [5, 20] {
        let viewer = fixture(&app, n).await;
        let (fewest, responses) = fewest_statements(&app, &viewer, NESTED).await;
        counts.push(fewest);
        let response = responses.last().unwrap();
        let memberships = response.data()["me"]["memberships"].as_array().unwrap().clone();
        // The personal organization plus the fixture's.
        assert_eq!(memberships.len(), n + 1);
        let members = memberships
            .iter()
            .map(|m| m["organization"]["members"].as_array().unwrap().len())
            .max()
            .unwrap();
        assert_eq!(members, n);
    }
    assert_eq!(
        counts[0], counts[1],
        "statements for 5 and 20 organizations: {counts:?}"
    );
    assert!(counts[0] < 25, "batched statements, not one per row: {counts:?}");
}

/// Members are read with their users in one statement: selecting each
/// member's user costs no statement more than selecting the members alone.
#[tokio::test]
async fn organizations_members_come_with_their_users_at_no_extra_statement() {
    // With Redis, and without it (the default set-up: PostgreSQL alone).
    for use_redis in [true, false] {
        let app = TestApp::spawn_with_redis(use_redis).await;
        members_and_their_users_cost_the_same(&app).await;
    }
}

async fn members_and_their_users_cost_the_same(app: &TestApp) {
    let viewer = fixture(app, 5).await;
    let mut fewest = Vec::new();
    for query in [
        "{ me { memberships { organization { members { role } } } } }",
        "{ me { memberships { organization { members { role user { name email } } } } } }",
    ] {
        let (statements, responses) = fewest_statements(app, &viewer, query).await;
        for response in responses {
            let memberships = response.data()["me"]["memberships"].as_array().unwrap().clone();
            assert_eq!(memberships.len(), 6, "{}", response.body);
            if query.contains("user") {
                let names: Vec<&Value> = memberships[1..]
                    .iter()
                    .flat_map(|m| m["organization"]["members"].as_array().unwrap())
                    .map(|member| &member["user"]["name"])
                    .collect();
                assert_eq!(names.len(), 25);
                assert!(names.iter().all(|name| name.is_string()), "{}", response.body);
            }
        }
        fewest.push(statements);
    }
    assert_eq!(
        fewest[0], fewest[1],
        "statements without and with the members' users: {fewest:?}"
    );
}

#[tokio::test]
async fn another_organizations_invitations_and_keys_are_not_found_like_missing_ones() {
    let Tenants {
        app,
        owner,
        outsider,
        organization,
    } = tenants().await;
    let invited = app
        .graphql_as(
            &owner.access,
            "mutation ($org: ID!) { inviteMember(organizationId: $org, email: \"friend@example.com\") { id } }",
            json!({ "org": organization }),
        )
        .await;
    let invitation = invited.data()["inviteMember"]["id"].as_str().unwrap().to_owned();
    let created = app
        .graphql_as(
            &owner.access,
            "mutation ($org: ID!) { createApiKey(input: { organizationId: $org, name: \"ci\" }) { apiKey { id } } }",
            json!({ "org": organization }),
        )
        .await;
    let key = created.data()["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (mutation, real) in [
        ("mutation ($id: ID!) { revokeInvitation(id: $id) }", invitation),
        ("mutation ($id: ID!) { revokeApiKey(id: $id) { id } }", key),
    ] {
        let mut answers = Vec::new();
        for id in [real, Uuid::now_v7().to_string()] {
            let response = app.graphql_as(&outsider.access, mutation, json!({ "id": id })).await;
            assert_eq!(response.error_code(), Some("NOT_FOUND"), "{}", response.body);
            answers.push(visible(&response.body));
        }
        assert_eq!(answers[0], answers[1], "{mutation}");
    }
    // Both still stand.
    let check = app
        .graphql_as(
            &owner.access,
            "query ($org: ID!) { organization(id: $org) { invitations { id } apiKeys { revokedAt } } }",
            json!({ "org": organization }),
        )
        .await;
    assert_eq!(check.data()["organization"]["invitations"].as_array().unwrap().len(), 1);
    assert_eq!(check.data()["organization"]["apiKeys"][0]["revokedAt"], Value::Null);
}

#[tokio::test]
async fn the_answer_of_login_shows_the_persons_organizations() {
    let app = TestApp::spawn().await;
    register(&app, "returning@example.com").await;
    let response = app
        .graphql(
            "mutation ($input: LoginInput!) { login(input: $input) { accessToken
                user { memberships { role organization { personal viewerRole } } } } }",
            json!({ "input": { "email": "returning@example.com", "password": crate::harness::people::PASSWORD } }),
        )
        .await;
    let login = &response.data()["login"];
    assert!(login["accessToken"].is_string(), "{}", response.body);
    assert_eq!(
        login["user"]["memberships"],
        json!([{ "role": "OWNER", "organization": { "personal": true, "viewerRole": "OWNER" } }])
    );
}

#[tokio::test]
async fn a_removed_members_keys_stay_dead_when_they_rejoin_and_keys_see_people_only_with_org_read() {
    let Tenants {
        app,
        owner,
        outsider: member,
        organization,
    } = tenants().await;
    add_member(
        &app,
        Uuid::parse_str(&organization).unwrap(),
        member.user_id,
        OrgRole::Member,
    )
    .await;
    let created = app
        .graphql_as(
            &member.access,
            "mutation ($org: ID!) { createApiKey(input: { organizationId: $org, name: \"ci\" }) { secret } }",
            json!({ "org": organization }),
        )
        .await;
    let secret = created.data()["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let info = "{ apiKeyInfo { apiKey { name } } }";
    assert_eq!(
        app.graphql_as(&secret, info, json!({})).await.data()["apiKeyInfo"]["apiKey"]["name"],
        "ci"
    );

    // Without ORG_READ the key cannot read its creator's account.
    let creator = app
        .graphql_as(&secret, "{ apiKeyInfo { apiKey { createdBy { email } } } }", json!({}))
        .await;
    assert_eq!(creator.error_code(), Some("FORBIDDEN"), "{}", creator.body);

    let removed = app
        .graphql_as(
            &owner.access,
            "mutation ($org: ID!, $user: ID!) { removeMember(organizationId: $org, userId: $user) }",
            json!({ "org": organization, "user": member.user_id }),
        )
        .await;
    assert_eq!(removed.data()["removeMember"], true);
    assert_eq!(
        app.graphql_as(&secret, info, json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );

    // Back in the organization, the old key is still revoked.
    add_member(
        &app,
        Uuid::parse_str(&organization).unwrap(),
        member.user_id,
        OrgRole::Member,
    )
    .await;
    assert_eq!(
        app.graphql_as(&secret, info, json!({})).await.error_code(),
        Some("UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn the_rules_answer_the_same_to_a_service_caller_without_graphql() {
    use tollgate::{auth::Principal, orgs::access::authorize};

    let app = TestApp::spawn().await;
    let team = crate::usage::team(&app, "service-rules.test", &[("viewer", OrgRole::Viewer)]).await;
    let outsider = register_verified(&app, "outsider@service-rules.test").await;
    let organization: Uuid = team.id.parse().unwrap();
    let person = |user_id| Principal::User {
        user_id,
        session_id: Uuid::nil(),
    };
    let code = |result: Result<_, tollgate::error::AppError>| match result {
        Ok(_) => "OK",
        Err(error) => error.code().as_str(),
    };
    let viewer = person(team.people[0].user_id);
    let owner = person(team.owner.user_id);
    for (principal, field, expected) in [
        (&owner, "Mutation.deleteOrganization", "OK"),
        (&viewer, "Organization.name", "OK"),
        (&viewer, "Mutation.inviteMember", "FORBIDDEN"),
        (&person(outsider.user_id), "Organization.name", "NOT_FOUND"),
        (&Principal::Anonymous, "Organization.name", "UNAUTHENTICATED"),
    ] {
        let answer = code(authorize(&app.state, principal, organization, field).await);
        assert_eq!(answer, expected, "{principal:?} on {field}");
    }
}
