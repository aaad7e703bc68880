//! API keys end to end: creation, authentication on HTTP and websockets,
//! revocation on every instance, expiry, address rules, the creator's
//! membership, visibility, plan limits, scopes and `lastUsedAt`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use tollgate::{
    auth::{roles::OrgRole, users::Role},
    db::schema::{api_keys, audit_log},
    orgs::{model as orgs, model::MembershipRow},
};
use uuid::Uuid;

use crate::harness::{
    TestApp, create_user,
    people::{SignedIn, register, verify_caller},
};

const CREATE: &str = "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) {
    secret apiKey { id name prefix scopes allowedModels allowedIps tokenLimit createdAt lastUsedAt expiresAt revokedAt
    createdBy { id } organization { id } } } }";
const REVOKE: &str = "mutation ($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }";
const INFO: &str = "{ apiKeyInfo { apiKey { id name scopes } organization { id } } }";
const KEYS_OF: &str = "query ($id: ID!) { organization(id: $id) { apiKeys { id name } } }";

/// A key as the tests hold it.
struct Key {
    id: String,
    secret: String,
}

async fn personal_org(app: &TestApp, person: &SignedIn) -> String {
    crate::harness::people::personal_organization(app, &person.access).await
}

/// A team organization owned by `owner`, with `others` added as members.
async fn team(app: &TestApp, owner: &SignedIn, others: &[(&SignedIn, OrgRole)]) -> String {
    verify_caller(app, &owner.access).await;
    let created = app
        .graphql_as(
            &owner.access,
            "mutation { createOrganization(input: { name: \"Team\" }) { id } }",
            json!({}),
        )
        .await;
    let id = created.data()["createOrganization"]["id"].as_str().unwrap().to_owned();
    let now = app.state.now();
    let mut conn = app.db().await;
    for (person, role) in others {
        let membership = MembershipRow {
            organization_id: id.parse().unwrap(),
            user_id: person.user_id,
            role: *role,
            token_limit: None,
            created_at: now,
            updated_at: now,
        };
        orgs::insert_membership(&mut conn, &membership).await.unwrap();
    }
    id
}

async fn try_create(app: &TestApp, token: &str, input: Value) -> crate::harness::GqlResponse {
    verify_caller(app, token).await;
    app.graphql_as(token, CREATE, json!({ "input": input })).await
}

async fn create(app: &TestApp, token: &str, input: Value) -> Key {
    let response = try_create(app, token, input).await;
    let created = &response.data()["createApiKey"];
    Key {
        id: created["apiKey"]["id"].as_str().unwrap().to_owned(),
        secret: created["secret"].as_str().unwrap().to_owned(),
    }
}

/// The `apiKeyInfo` answer's error code with this key, None when it works.
async fn key_refusal(app: &TestApp, secret: &str) -> Option<String> {
    app.graphql_as(secret, INFO, json!({}))
        .await
        .error_code()
        .map(str::to_owned)
}

async fn revoke(app: &TestApp, token: &str, id: &str) -> crate::harness::GqlResponse {
    app.graphql_as(token, REVOKE, json!({ "id": id })).await
}

fn uuid(id: &str) -> Uuid {
    id.parse().unwrap()
}

#[tokio::test]
async fn a_new_key_shows_its_secret_once_stores_only_its_hash_and_authenticates() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let response = try_create(&app, &owner.access, json!({ "organizationId": org, "name": "  CI  " })).await;
    let created = &response.data()["createApiKey"];
    let secret = created["secret"].as_str().unwrap();
    let key = &created["apiKey"];
    let random = secret.strip_prefix("tg_live_").expect("the tg_live_ prefix");
    assert_eq!(random.len(), 32);
    assert!(random.chars().all(|c| c.is_ascii_alphanumeric()), "base62: {secret}");
    assert_eq!(key["prefix"], secret[..12]);
    assert_eq!(key["name"], "CI");
    assert_eq!(key["scopes"], json!(["USAGE_WRITE"]));
    assert_eq!(key["allowedModels"], Value::Null);
    assert_eq!(key["revokedAt"], Value::Null);
    assert_eq!(key["createdBy"]["id"], owner.user_id.to_string());
    assert_eq!(key["organization"]["id"], org);

    let another = create(&app, &owner.access, json!({ "organizationId": org, "name": "other" })).await;
    assert_ne!(another.secret, secret);
    assert_ne!(another.secret[8..], secret[8..]);

    let mut conn = app.db().await;
    let (hash, prefix): (Vec<u8>, String) = api_keys::table
        .find(uuid(key["id"].as_str().unwrap()))
        .select((api_keys::secret_hash, api_keys::prefix))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(hash, Sha256::digest(secret.as_bytes()).to_vec());
    assert_eq!(prefix, secret[..12]);
    let audit: Vec<Value> = audit_log::table
        .filter(audit_log::action.eq("api_key.created"))
        .select(audit_log::metadata)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert!(
        audit.iter().all(|m| !m.to_string().contains(random)),
        "the secret is never audited"
    );

    let info = app.graphql_as(secret, INFO, json!({})).await;
    assert_eq!(info.data()["apiKeyInfo"]["apiKey"]["id"], key["id"]);
    assert_eq!(info.data()["apiKeyInfo"]["organization"]["id"], org);
    // Any other "tg_live_" token is a key nobody has.
    let forged = format!("tg_live_{}", "A".repeat(32));
    assert_eq!(key_refusal(&app, &forged).await.as_deref(), Some("UNAUTHENTICATED"));
    // apiKeyInfo needs a key.
    let as_user = app.graphql_as(&owner.access, INFO, json!({})).await;
    assert_eq!(as_user.error_code(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn bad_inputs_name_their_field() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let past = (app.state.now() - chrono::Duration::minutes(1)).to_rfc3339();
    for (input, field) in [
        (json!({ "organizationId": org, "name": " " }), "name"),
        (json!({ "organizationId": org, "name": "k", "scopes": [] }), "scopes"),
        (
            json!({ "organizationId": org, "name": "k", "allowedModels": [""] }),
            "allowedModels",
        ),
        (
            json!({ "organizationId": org, "name": "k", "allowedIps": ["10.0.0.0/99"] }),
            "allowedIps",
        ),
        (
            json!({ "organizationId": org, "name": "k", "allowedIps": ["nope"] }),
            "allowedIps",
        ),
        (
            json!({ "organizationId": org, "name": "k", "tokenLimit": -1 }),
            "tokenLimit",
        ),
        (
            json!({ "organizationId": org, "name": "k", "expiresAt": past }),
            "expiresAt",
        ),
    ] {
        let response = try_create(&app, &owner.access, input.clone()).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{input}");
        assert_eq!(response.body["errors"][0]["extensions"]["field"], field, "{input}");
    }
    let normalized = try_create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "k", "allowedModels": [" GPT-4o "],
                "allowedIps": ["10.1.2.3/8", "::1"], "tokenLimit": 1000,
                "scopes": ["USAGE_READ", "ORG_READ"] }),
    )
    .await;
    let key = &normalized.data()["createApiKey"]["apiKey"];
    assert_eq!(key["allowedModels"], json!(["gpt-4o"]));
    assert_eq!(key["allowedIps"], json!(["10.0.0.0/8", "::1"]));
    assert_eq!(key["tokenLimit"], 1000);
    assert_eq!(key["scopes"], json!(["USAGE_READ", "ORG_READ"]));
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_on_every_instance() {
    let app = TestApp::spawn().await;
    let sibling = app.spawn_sibling().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let key = create(&app, &owner.access, json!({ "organizationId": org, "name": "k" })).await;
    // Both instances have the key cached.
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    assert_eq!(key_refusal(&sibling, &key.secret).await, None);

    let revoked = revoke(&app, &owner.access, &key.id).await;
    let revoked_at = revoked.data()["revokeApiKey"]["revokedAt"].clone();
    assert!(revoked_at.is_string());
    assert_eq!(key_refusal(&app, &key.secret).await.as_deref(), Some("UNAUTHENTICATED"));
    let started = Instant::now();
    while key_refusal(&sibling, &key.secret).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the sibling still accepts the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Revoking again changes nothing.
    let again = revoke(&app, &owner.access, &key.id).await;
    assert_eq!(again.data()["revokeApiKey"]["revokedAt"], revoked_at);
    let mut conn = app.db().await;
    let audited: i64 = audit_log::table
        .filter(audit_log::action.eq("api_key.revoked"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn an_expired_key_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let expires = (app.state.now() + chrono::Duration::hours(1)).to_rfc3339();
    let key = create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "k", "expiresAt": expires }),
    )
    .await;
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    app.clock.advance(chrono::Duration::minutes(61));
    assert_eq!(key_refusal(&app, &key.secret).await.as_deref(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn a_key_works_only_from_the_addresses_it_allows() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    // The tests connect from 127.0.0.1.
    let elsewhere = create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "office", "allowedIps": ["10.0.0.0/8", "2001:db8::/32"] }),
    )
    .await;
    assert_eq!(key_refusal(&app, &elsewhere.secret).await.as_deref(), Some("FORBIDDEN"));
    let local = create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "local", "allowedIps": ["::1", "127.0.0.0/8"] }),
    )
    .await;
    assert_eq!(key_refusal(&app, &local.secret).await, None);
    let mapped = create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "mapped", "allowedIps": ["::ffff:127.0.0.1"] }),
    )
    .await;
    assert_eq!(key_refusal(&app, &mapped.secret).await, None);
}

#[tokio::test]
async fn a_key_stops_working_when_its_creator_leaves_the_organization() {
    let app = TestApp::spawn().await;
    let sibling = app.spawn_sibling().await;
    let owner = register(&app, "owner@keys.test").await;
    let member = register(&app, "member@keys.test").await;
    let org = team(&app, &owner, &[(&member, OrgRole::Member)]).await;
    let key = create(&app, &member.access, json!({ "organizationId": org, "name": "k" })).await;
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    assert_eq!(key_refusal(&sibling, &key.secret).await, None);

    let removed = app
        .graphql_as(
            &owner.access,
            "mutation ($org: ID!, $user: ID!) { removeMember(organizationId: $org, userId: $user) }",
            json!({ "org": org, "user": member.user_id }),
        )
        .await;
    assert_eq!(removed.data()["removeMember"], true);
    assert_eq!(key_refusal(&app, &key.secret).await.as_deref(), Some("UNAUTHENTICATED"));
    let started = Instant::now();
    while key_refusal(&sibling, &key.secret).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the sibling still accepts the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_key_stops_working_when_its_creator_is_suspended() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let key = create(&app, &owner.access, json!({ "organizationId": org, "name": "k" })).await;
    let sibling = app.spawn_sibling().await;
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    assert_eq!(key_refusal(&sibling, &key.secret).await, None);

    let staff = create_user(&app, "staff@keys.test", Role::Admin).await;
    let suspended = app
        .graphql_as(
            &app.token_for(staff).await,
            "mutation ($id: ID!) { suspendUser(userId: $id) { suspended } }",
            json!({ "id": owner.user_id }),
        )
        .await;
    assert_eq!(suspended.data()["suspendUser"]["suspended"], true);
    assert_eq!(key_refusal(&app, &key.secret).await.as_deref(), Some("UNAUTHENTICATED"));
    let started = Instant::now();
    while key_refusal(&sibling, &key.secret).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the sibling still accepts the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn deleting_the_organization_deletes_its_keys() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = team(&app, &owner, &[]).await;
    let key = create(&app, &owner.access, json!({ "organizationId": org, "name": "k" })).await;
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    let deleted = app
        .graphql_as(
            &owner.access,
            "mutation ($id: ID!) { deleteOrganization(id: $id) }",
            json!({ "id": org }),
        )
        .await;
    assert_eq!(deleted.data()["deleteOrganization"], true);
    assert_eq!(key_refusal(&app, &key.secret).await.as_deref(), Some("UNAUTHENTICATED"));
    let mut conn = app.db().await;
    let left: i64 = api_keys::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn admins_see_and_revoke_every_key_members_only_their_own() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let admin = register(&app, "admin@keys.test").await;
    let member = register(&app, "member@keys.test").await;
    let viewer = register(&app, "viewer@keys.test").await;
    let outsider = register(&app, "outsider@keys.test").await;
    let org = team(
        &app,
        &owner,
        &[
            (&admin, OrgRole::Admin),
            (&member, OrgRole::Member),
            (&viewer, OrgRole::Viewer),
        ],
    )
    .await;
    let owners = create(&app, &owner.access, json!({ "organizationId": org, "name": "owner's" })).await;
    let members = create(
        &app,
        &member.access,
        json!({ "organizationId": org, "name": "member's" }),
    )
    .await;
    let viewer_create = try_create(&app, &viewer.access, json!({ "organizationId": org, "name": "v" })).await;
    assert_eq!(viewer_create.error_code(), Some("FORBIDDEN"));
    let outsider_create = try_create(&app, &outsider.access, json!({ "organizationId": org, "name": "o" })).await;
    assert_eq!(outsider_create.error_code(), Some("NOT_FOUND"));

    let names = |response: crate::harness::GqlResponse| -> Vec<String> {
        response.data()["organization"]["apiKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let vars = json!({ "id": org });
    assert_eq!(
        names(app.graphql_as(&admin.access, KEYS_OF, vars.clone()).await),
        ["owner's", "member's"]
    );
    assert_eq!(
        names(app.graphql_as(&member.access, KEYS_OF, vars.clone()).await),
        ["member's"]
    );
    assert!(names(app.graphql_as(&viewer.access, KEYS_OF, vars.clone()).await).is_empty());

    // A member cannot tell another member's key from none; nor can outsiders.
    assert_eq!(
        revoke(&app, &member.access, &owners.id).await.error_code(),
        Some("NOT_FOUND")
    );
    assert_eq!(
        revoke(&app, &outsider.access, &members.id).await.error_code(),
        Some("NOT_FOUND")
    );
    assert_eq!(
        revoke(&app, &outsider.access, &Uuid::now_v7().to_string())
            .await
            .error_code(),
        Some("NOT_FOUND")
    );
    assert_eq!(key_refusal(&app, &owners.secret).await, None);
    // ADMINs revoke anyone's key; members their own.
    revoke(&app, &admin.access, &owners.id).await.data();
    revoke(&app, &member.access, &members.id).await.data();
    assert_eq!(
        key_refusal(&app, &owners.secret).await.as_deref(),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        key_refusal(&app, &members.secret).await.as_deref(),
        Some("UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn the_plan_caps_active_keys() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    // The free plan allows 3.
    let mut keys = Vec::new();
    for n in 0..3 {
        keys.push(
            create(
                &app,
                &owner.access,
                json!({ "organizationId": org, "name": format!("k{n}") }),
            )
            .await,
        );
    }
    let fourth = try_create(&app, &owner.access, json!({ "organizationId": org, "name": "k3" })).await;
    assert_eq!(fourth.error_code(), Some("CONFLICT"));
    revoke(&app, &owner.access, &keys[0].id).await.data();
    create(&app, &owner.access, json!({ "organizationId": org, "name": "k3" })).await;
}

#[tokio::test]
async fn a_key_reaches_only_what_its_scopes_allow() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let writer = create(&app, &owner.access, json!({ "organizationId": org, "name": "writer" })).await;
    let reader = create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "reader", "scopes": ["ORG_READ"] }),
    )
    .await;

    let me = app.graphql_as(&writer.secret, "{ me { id } }", json!({})).await;
    assert_eq!(me.error_code(), Some("FORBIDDEN"));
    // `me` is nullable: refused, it is null and listed with its error.
    assert_eq!(me.body["data"], json!({ "me": null }));
    let keys_of_own = "{ apiKeyInfo { organization { apiKeys { name } } } }";
    let members = "{ apiKeyInfo { organization { name members { role } } } }";
    assert_eq!(
        app.graphql_as(&writer.secret, keys_of_own, json!({}))
            .await
            .error_code(),
        Some("FORBIDDEN")
    );
    assert_eq!(
        app.graphql_as(&writer.secret, members, json!({})).await.error_code(),
        Some("FORBIDDEN")
    );
    // ORG_READ reads the organization; a key sees only itself among keys.
    let listed = app.graphql_as(&reader.secret, keys_of_own, json!({})).await;
    assert_eq!(
        listed.data()["apiKeyInfo"]["organization"]["apiKeys"],
        json!([{ "name": "reader" }])
    );
    // Keys never manage keys.
    let by_key = try_create(&app, &reader.secret, json!({ "organizationId": org, "name": "x" })).await;
    assert_eq!(by_key.error_code(), Some("FORBIDDEN"));
    assert_eq!(
        revoke(&app, &reader.secret, &writer.id).await.error_code(),
        Some("FORBIDDEN")
    );
}

/// Every root query and mutation field, called with an API key (of every
/// scope): only those the contract lets keys use get past the gate;
/// everything else is FORBIDDEN.
#[tokio::test]
async fn every_root_field_but_the_allowed_ones_is_forbidden_to_keys() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let key = create(
        &app,
        &owner.access,
        json!({ "organizationId": org, "name": "all", "scopes": ["USAGE_WRITE", "USAGE_READ", "ORG_READ"] }),
    )
    .await;
    let schema = app.graphql(SCHEMA_QUERY, json!({})).await;
    let types = schema.data()["__schema"]["types"].as_array().unwrap().clone();
    let allowed = [
        "Query.models",
        "Query.plans",
        "Query.clientConfig",
        "Query.apiKeyInfo",
        "Query.authorizeUsage",
        "Query.organization",
        "Mutation.recordUsage",
        "Mutation.recordUsageBatch",
    ];
    let mut walked = 0;
    for (root, keyword) in [("Query", "query"), ("Mutation", "mutation")] {
        let root_type = types.iter().find(|t| t["name"] == root).unwrap();
        for field in root_type["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            let args: Vec<String> = field["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["type"]["kind"] == "NON_NULL" && a["defaultValue"].is_null())
                .map(|a| format!("{}: {}", a["name"].as_str().unwrap(), literal(&types, &a["type"], &org)))
                .collect();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({})", args.join(", "))
            };
            let selection = if needs_selection(&field["type"]) {
                " { __typename }"
            } else {
                ""
            };
            let document = format!("{keyword} {{ {name}{args}{selection} }}");
            let response = app.graphql_as(&key.secret, &document, json!({})).await;
            let refused_by_gate = response.body["errors"].as_array().is_some_and(|errors| {
                errors.iter().any(|e| {
                    e["extensions"]["code"] == "FORBIDDEN"
                        && e["message"]
                            .as_str()
                            .unwrap_or_default()
                            .starts_with("an API key may not use")
                })
            });
            let qualified = format!("{root}.{name}");
            assert_ne!(
                response.error_code(),
                Some("GRAPHQL_VALIDATION_FAILED"),
                "{document}: {}",
                response.body
            );
            if allowed.contains(&qualified.as_str()) {
                assert!(!refused_by_gate, "{qualified} must be open to keys: {}", response.body);
            } else {
                assert!(
                    refused_by_gate,
                    "{qualified} must be FORBIDDEN to keys: {}",
                    response.body
                );
                assert_eq!(response.error_code(), Some("FORBIDDEN"));
            }
            walked += 1;
        }
    }
    assert!(walked > 40, "only {walked} root fields");
}

const SCHEMA_QUERY: &str = "{ __schema { types { name kind
    enumValues { name }
    inputFields { name defaultValue type { ...T } }
    fields { name type { ...T } args { name defaultValue type { ...T } } } } } }
    fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }";

/// Whether a field of this type needs a selection set.
fn needs_selection(ty: &Value) -> bool {
    match ty["kind"].as_str() {
        Some("NON_NULL" | "LIST") => needs_selection(&ty["ofType"]),
        Some("OBJECT" | "INTERFACE" | "UNION") => true,
        _ => false,
    }
}

/// A literal of the type that passes validation.
fn literal(types: &[Value], ty: &Value, org: &str) -> String {
    match ty["kind"].as_str().unwrap() {
        "NON_NULL" => literal(types, &ty["ofType"], org),
        "LIST" => "[]".to_owned(),
        "ENUM" => {
            let name = ty["name"].as_str().unwrap();
            let def = types.iter().find(|t| t["name"] == name).unwrap();
            def["enumValues"][0]["name"].as_str().unwrap().to_owned()
        }
        "INPUT_OBJECT" => {
            let name = ty["name"].as_str().unwrap();
            let def = types.iter().find(|t| t["name"] == name).unwrap();
            let fields: Vec<String> = def["inputFields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["type"]["kind"] == "NON_NULL" && f["defaultValue"].is_null())
                .map(|f| format!("{}: {}", f["name"].as_str().unwrap(), literal(types, &f["type"], org)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        _ => match ty["name"].as_str().unwrap() {
            "Int" | "Float" | "BigInt" => "1".to_owned(),
            "Boolean" => "true".to_owned(),
            "DateTime" => "\"2030-01-01T00:00:00Z\"".to_owned(),
            "JSON" => "{}".to_owned(),
            "ID" => format!("\"{org}\""),
            _ => "\"x\"".to_owned(),
        },
    }
}

#[tokio::test]
async fn last_used_at_is_written_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let key = create(&app, &owner.access, json!({ "organizationId": org, "name": "k" })).await;
    let last_used = async || -> Option<DateTime<Utc>> {
        let mut conn = app.db().await;
        api_keys::table
            .find(uuid(&key.id))
            .select(api_keys::last_used_at)
            .first(&mut conn)
            .await
            .unwrap()
    };
    let wait_for = async |wanted: &dyn Fn(Option<DateTime<Utc>>) -> bool| {
        let started = Instant::now();
        loop {
            let value = last_used().await;
            if wanted(value) {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "lastUsedAt stayed {value:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(last_used().await, None);
    let first_use = app.state.now();
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    let first = wait_for(&|v| v.is_some()).await.unwrap();
    assert!(first >= first_use - chrono::Duration::seconds(1));

    app.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        last_used().await,
        Some(first),
        "a second use within the minute is not written"
    );

    app.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(key_refusal(&app, &key.secret).await, None);
    let second = wait_for(&|v| v != Some(first)).await.unwrap();
    assert!(second >= first + chrono::Duration::seconds(61));
}

#[tokio::test]
async fn a_key_authenticates_a_websocket_and_a_revoked_one_is_closed_with_4403() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@keys.test").await;
    let org = personal_org(&app, &owner).await;
    let key = create(&app, &owner.access, json!({ "organizationId": org, "name": "k" })).await;

    let init =
        |secret: &str| json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {secret}") } });
    let mut socket = ws_connect(&app).await;
    socket.send(Message::text(init(&key.secret).to_string())).await.unwrap();
    assert_eq!(next_message(&mut socket).await, Ok(json!({ "type": "connection_ack" })));

    revoke(&app, &owner.access, &key.id).await.data();
    let mut socket = ws_connect(&app).await;
    socket.send(Message::text(init(&key.secret).to_string())).await.unwrap();
    assert_eq!(next_message(&mut socket).await, Err(4403));
}

async fn ws_connect(
    app: &TestApp,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = app.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket handshake")
        .0
}

/// The next JSON message, or the close code.
async fn next_message(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Result<Value, u16> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "ping" {
                    return Ok(value);
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map_or(1005, |f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error: {e}"),
            None => return Err(1006),
        }
    }
}
