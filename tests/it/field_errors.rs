//! A field that fails is still there: `null` in `data` with its error
//! listed, and its parent kept (or, for a non-null field, its nearest
//! nullable ancestor null), on HTTP and websockets alike.
//!
//! The walk is derived from the code: every `Organization` field whose
//! rule in `tollgate::orgs::access::RULES` refuses a MEMBER or a key
//! without scopes for it, and every field the served schema describes as
//! "null with FORBIDDEN" for other people (on users, and on the public
//! model catalog), is read by someone who may not.

use serde_json::{Value, json};
use tollgate::{
    auth::{keys::scope::ApiKeyScope, roles::OrgRole},
    orgs::access::{Access, KeyAccess, rule_of},
};
use uuid::Uuid;

use crate::{
    harness::{
        TestApp,
        people::{SignedIn, register, register_verified},
        ws,
    },
    organizations::add_member,
    tenancy::{Contract, call},
};

/// Who reads, and what the access rules make of them.
pub struct Reader {
    name: &'static str,
    /// Their access token or key secret.
    pub token: String,
    access: Access,
}

/// Where a gated field sits: on the organization itself, on the user of
/// another member, or on every model of the public catalog.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Parent {
    Organization,
    OtherMember,
    CatalogModel,
}

/// One field read by someone who may not read it.
struct Case<'r> {
    parent: Parent,
    field: async_graphql::parser::types::FieldDefinition,
    reader: &'r Reader,
}

impl Case<'_> {
    fn name(&self) -> String {
        let ty = match self.parent {
            Parent::Organization => "Organization",
            Parent::OtherMember => "User",
            Parent::CatalogModel => "Model",
        };
        format!("{ty}.{} as {}", self.field.name.node, self.reader.name)
    }

    /// The query, with or without a sibling field next to the gated one.
    fn query(&self, contract: &Contract, organization: &str, sibling: bool) -> (String, Value) {
        let (declarations, body, mut variables) = call(contract, &self.field, organization);
        if self.parent == Parent::CatalogModel {
            let id = if sibling { "id" } else { "" };
            return (
                format!("query {declarations} {{ models {{ {id} {body} }} }}"),
                variables,
            );
        }
        let declarations = declarations.trim_start_matches('(').trim_end_matches(')');
        let declarations = if declarations.is_empty() {
            "$id: ID!".to_owned()
        } else {
            format!("$id: ID!, {declarations}")
        };
        variables["id"] = json!(organization);
        let query = match (self.parent, sibling) {
            (Parent::Organization, true) => {
                format!("query ({declarations}) {{ organization(id: $id) {{ id {body} }} }}")
            }
            (Parent::Organization, false) => format!("query ({declarations}) {{ organization(id: $id) {{ {body} }} }}"),
            (Parent::OtherMember, true) => {
                format!(
                    "query ({declarations}) {{ organization(id: $id) {{ members {{ role user {{ id {body} }} }} }} }}"
                )
            }
            (Parent::OtherMember, false) => {
                format!("query ({declarations}) {{ organization(id: $id) {{ members {{ role user {{ {body} }} }} }} }}")
            }
            (Parent::CatalogModel, _) => unreachable!("answered above"),
        };
        (query, variables)
    }
}

/// An organization "P Org" with its OWNER, and readers who may not read
/// everything: a MEMBER (`readers[0]`) and a USAGE_WRITE key
/// (`readers[1]`).
pub struct World {
    pub app: TestApp,
    owner: SignedIn,
    /// The organization's id.
    pub organization: String,
    pub readers: Vec<Reader>,
}

pub async fn world() -> World {
    let app = TestApp::spawn().await;
    let owner = register_verified(&app, "owner@example.com").await;
    let member = register(&app, "member@example.com").await;
    let created = app
        .graphql_as(
            &owner.access,
            "mutation { createOrganization(input: { name: \"P Org\" }) { id } }",
            json!({}),
        )
        .await;
    let organization = created.data()["createOrganization"]["id"].as_str().unwrap().to_owned();
    let organization_id = Uuid::parse_str(&organization).unwrap();
    add_member(&app, organization_id, member.user_id, OrgRole::Member).await;
    let key = app
        .graphql_as(
            &owner.access,
            "mutation ($org: ID!) { createApiKey(input: { organizationId: $org, name: \"writer\", scopes: [USAGE_WRITE] }) { secret } }",
            json!({ "org": organization }),
        )
        .await;
    let key = key.data()["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let readers = vec![
        Reader {
            name: "a MEMBER",
            token: member.access.clone(),
            access: Access {
                organization_id,
                role: Some(OrgRole::Member),
                staff: None,
                key: KeyAccess::NotAKey,
            },
        },
        Reader {
            name: "a USAGE_WRITE key",
            token: key,
            access: Access {
                organization_id,
                role: None,
                staff: None,
                key: KeyAccess::Own([ApiKeyScope::UsageWrite].into_iter().collect()),
            },
        },
    ];
    World {
        app,
        owner,
        organization,
        readers,
    }
}

/// Every gated field with someone who may not read it.
fn cases<'r>(contract: &Contract, readers: &'r [Reader]) -> Vec<Case<'r>> {
    let mut cases = Vec::new();
    for field in contract.fields("Organization") {
        let name = format!("Organization.{}", field.name.node);
        if rule_of(&name).is_none() {
            continue;
        }
        for reader in readers {
            if reader.access.require(&name).is_err() {
                cases.push(Case {
                    parent: Parent::Organization,
                    field: field.clone(),
                    reader,
                });
            }
        }
    }
    // Fields of other people's accounts, by what the schema promises.
    let member = &readers[0];
    for ty in contract.object_types() {
        for field in contract.fields(ty) {
            let described = field
                .description
                .as_ref()
                .is_some_and(|d| d.node.contains("null with FORBIDDEN"));
            if !described || ty == "Organization" {
                continue;
            }
            if ty == "Model" {
                // The catalog is public: anyone signed in, and keys.
                for reader in readers {
                    cases.push(Case {
                        parent: Parent::CatalogModel,
                        field: field.clone(),
                        reader,
                    });
                }
                continue;
            }
            assert_eq!(
                ty, "User",
                "{ty}.{} is null with FORBIDDEN for some callers: teach this walk how to reach a {ty} as one of them",
                field.name.node
            );
            cases.push(Case {
                parent: Parent::OtherMember,
                field,
                reader: member,
            });
        }
    }
    cases
}

/// The gated field's parent object and the path of its error, found in
/// `data` (the owner's user among the members for user fields).
fn parent_of<'d>(case: &Case<'_>, data: &'d Value) -> (&'d Value, Value) {
    let field = case.field.name.node.as_str();
    match case.parent {
        Parent::Organization => (&data["organization"], json!(["organization", field])),
        Parent::CatalogModel => unreachable!("a field of every model"),
        Parent::OtherMember => {
            let members = data["organization"]["members"].as_array().cloned().unwrap_or_default();
            let index = members
                .iter()
                .position(|m| m["role"] == "OWNER")
                .unwrap_or_else(|| panic!("{}: no owner among the members: {data}", case.name()));
            (
                &data["organization"]["members"][index]["user"],
                json!(["organization", "members", index, "user", field]),
            )
        }
    }
}

fn check(case: &Case<'_>, world: &World, sibling: bool, transport: &str, body: &Value) {
    let what = format!("{} ({transport}, sibling: {sibling}): {body}", case.name());
    if case.parent == Parent::CatalogModel {
        return check_catalog(case, sibling, &what, body);
    }
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("no errors: {what}"));
    assert_eq!(errors.len(), 1, "{what}");
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{what}");
    let data = body["data"].as_object().unwrap_or_else(|| panic!("no data: {what}"));
    let data = Value::Object(data.clone());
    let field = case.field.name.node.as_str();
    if !case.field.ty.node.nullable {
        // The nearest nullable position above a non-null field takes the
        // null: the organization.
        assert_eq!(data, json!({ "organization": null }), "{what}");
        let path = errors[0]["path"]
            .as_array()
            .unwrap_or_else(|| panic!("no path: {what}"));
        assert_eq!(path.last(), Some(&json!(field)), "{what}");
        return;
    }
    let (parent, path) = parent_of(case, &data);
    let parent = parent
        .as_object()
        .unwrap_or_else(|| panic!("the parent is gone: {what}"));
    assert!(parent.contains_key(field), "the key is missing: {what}");
    assert_eq!(parent[field], Value::Null, "{what}");
    assert_eq!(errors[0]["path"], path, "{what}");
    if sibling {
        let expected = match case.parent {
            Parent::Organization => json!(world.organization),
            Parent::OtherMember => json!(world.owner.user_id.to_string()),
            Parent::CatalogModel => unreachable!("checked by check_catalog"),
        };
        assert_eq!(parent["id"], expected, "the sibling is kept: {what}");
    }
}

/// A nullable field of every catalog model: null with FORBIDDEN on each,
/// every model kept.
fn check_catalog(case: &Case<'_>, sibling: bool, what: &str, body: &Value) {
    let field = case.field.name.node.as_str();
    assert!(case.field.ty.node.nullable, "{what}");
    let models = body["data"]["models"]
        .as_array()
        .unwrap_or_else(|| panic!("the catalog is gone: {what}"));
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("no errors: {what}"));
    assert!(!models.is_empty(), "{what}");
    assert_eq!(errors.len(), models.len(), "one error per model: {what}");
    for (index, (model, error)) in models.iter().zip(errors).enumerate() {
        let model = model.as_object().unwrap_or_else(|| panic!("a model is gone: {what}"));
        assert!(model.contains_key(field), "the key is missing: {what}");
        assert_eq!(model[field], Value::Null, "{what}");
        assert_eq!(model.contains_key("id"), sibling, "{what}");
        assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{what}");
        assert!(
            errors.iter().any(|e| e["path"] == json!(["models", index, field])),
            "no error for model {index}: {what}"
        );
    }
}

/// The answer to a query sent over graphql-transport-ws.
async fn over_websocket(app: &TestApp, token: &str, query: &str, variables: &Value) -> Value {
    let mut socket = ws::connect_as(app, "graphql-transport-ws", token).await;
    ws::send(
        &mut socket,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    let message = ws::receive(&mut socket).await;
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(ws::receive(&mut socket).await["type"], "complete");
    message["payload"].clone()
}

#[tokio::test]
async fn every_gated_field_read_without_access_is_null_with_its_error_and_its_parent_kept() {
    let world = world().await;
    let contract = Contract::served();
    let cases = cases(&contract, &world.readers);
    let nullable = cases.iter().filter(|c| c.field.ty.node.nullable).count();
    assert!(
        nullable >= 4 && cases.len() >= 10,
        "the walk found the gated fields: {:?}",
        cases.iter().map(Case::name).collect::<Vec<_>>()
    );
    for case in &cases {
        for sibling in [false, true] {
            let (query, variables) = case.query(&contract, &world.organization, sibling);
            let http = world
                .app
                .graphql_as(&case.reader.token, &query, variables.clone())
                .await;
            check(case, &world, sibling, "HTTP", &http.body);
            let ws = over_websocket(&world.app, &case.reader.token, &query, &variables).await;
            check(case, &world, sibling, "websocket", &ws);
        }
    }
}

#[tokio::test]
async fn a_member_reading_the_audit_log_keeps_the_organization() {
    // The issue's own example, spelled out.
    let world = world().await;
    let member = &world.readers[0].token;
    let alone = world
        .app
        .graphql_as(
            member,
            "query ($id: ID!) { organization(id: $id) { auditLog(first: 5) { totalCount } } }",
            json!({ "id": world.organization }),
        )
        .await;
    assert_eq!(alone.body["data"], json!({ "organization": { "auditLog": null } }));
    assert_eq!(alone.body["errors"][0]["path"], json!(["organization", "auditLog"]));
    let named = world
        .app
        .graphql_as(
            member,
            "query ($id: ID!) { organization(id: $id) { name auditLog(first: 5) { totalCount } } }",
            json!({ "id": world.organization }),
        )
        .await;
    assert_eq!(
        named.body["data"],
        json!({ "organization": { "name": "P Org", "auditLog": null } })
    );
    assert_eq!(named.error_code(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn a_null_that_reaches_data_from_deeper_down_is_an_answer_not_a_refusal() {
    // A key without ORG_READ asking for the members of its organization:
    // members, organization and apiKeyInfo are all non-null, so data is
    // null; the operation still ran, so websockets send `next`.
    let world = world().await;
    let key = &world.readers[1].token;
    let query = "{ apiKeyInfo { organization { id members { role } } } }";
    let http = world.app.graphql_as(key, query, json!({})).await;
    assert_eq!(http.status, reqwest::StatusCode::OK);
    assert_eq!(http.body["data"], Value::Null, "{}", http.body);
    assert_eq!(
        http.body["errors"][0]["path"],
        json!(["apiKeyInfo", "organization", "members"])
    );
    let ws = over_websocket(&world.app, key, query, &json!({})).await;
    assert_eq!(ws["data"], Value::Null, "{ws}");
    assert_eq!(ws["errors"][0]["extensions"]["code"], "FORBIDDEN", "{ws}");
}
