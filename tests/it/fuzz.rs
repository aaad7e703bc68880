//! Fuzzes the whole schema: every root field of the exported SDL, with
//! arguments (and input-object fields) made by a generator of our own from
//! the SDL's types, mixing plausible values (real ids, real codes, real
//! plan keys) with hostile ones (U+0000, huge and odd strings, control and
//! unicode characters, SQL and JSON look-alikes, i64 edges, floats where
//! ints go, wrong ids, wrong types), and nested selections with their own
//! arguments. Each case runs as an anonymous caller, a signed-in user, an
//! ADMIN and an API key, over HTTP (POST, GET, multipart uploads, raw
//! bodies no JSON writer makes, odd Authorization headers) and over
//! websockets (subscriptions and operations, odd connection_init
//! payloads). Nothing may answer INTERNAL (or SERVICE_UNAVAILABLE, with the
//! database up), a 5xx or an error without a code, and no server thread
//! may panic: the server runs on threads of its own name, watched by a
//! panic hook (the in-process form of "no panic in the server's log").
//!
//! The seed is fixed, so a run is repeatable: `FUZZ_SEED` and `FUZZ_CASES`
//! (cases per root field and caller) explore further. The committed run
//! sends about 5,000 operations in some 25 s of a debug build on 2 cores.

use std::{
    collections::HashSet,
    fmt::Write as _,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_graphql::parser::types::{BaseType, FieldDefinition, InputValueDefinition, Type, TypeKind};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;
use tollgate::auth::roles::OrgRole;
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, TestAppOptions,
        people::{PASSWORD, personal_organization, register, register_verified},
        sdl::{SdlTypes, base_name},
        stripe::FakeStripe,
        ws,
    },
    organizations::{add_member, create_org},
};

/// The seed of the committed run.
const SEED: u64 = 0x7011_6a7e_f022_2026;
/// Cases per root field and caller in the committed run.
const CASES: usize = 20;
/// Deepest selection the generator nests.
const MAX_DEPTH: usize = 4;
/// Websocket messages the generator keeps under (the server's cap is
/// 256 KiB).
const WS_MESSAGE_CAP: usize = 200 * 1024;
/// Failures printed in full.
const SHOWN_FAILURES: usize = 25;

// ------------------------------------------------------------------- rng

/// splitmix64: tiny, fast and good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ----------------------------------------------------------------- values

/// A generated input value, written either as JSON (variables) or as a
/// GraphQL literal. Numbers keep their text, so values no JSON library
/// would write (2^63, 1e400) reach the server as sent.
#[derive(Debug, Clone)]
enum Val {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Enum(String),
    List(Vec<Val>),
    Obj(Vec<(String, Val)>),
}

impl Val {
    fn json(&self, out: &mut String) {
        match self {
            Val::Null => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Num(n) => out.push_str(n),
            Val::Str(s) | Val::Enum(s) => out.push_str(&quote(s)),
            Val::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.json(out);
                }
                out.push(']');
            }
            Val::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&quote(key));
                    out.push(':');
                    value.json(out);
                }
                out.push('}');
            }
        }
    }

    fn literal(&self, out: &mut String) {
        match self {
            Val::Enum(name) if is_name(name) => out.push_str(name),
            Val::List(items) => {
                out.push('[');
                for item in items {
                    item.literal(out);
                    out.push(' ');
                }
                out.push(']');
            }
            Val::Obj(fields) => {
                out.push('{');
                for (key, value) in fields {
                    // Keys of a literal object are names; JSON scalars with
                    // other keys only travel as variables.
                    let key = if is_name(key) { key.clone() } else { "_".into() };
                    out.push_str(&key);
                    out.push(':');
                    value.literal(out);
                    out.push(' ');
                }
                out.push('}');
            }
            other => other.json(out),
        }
    }

    fn to_json(&self) -> String {
        let mut out = String::new();
        self.json(&mut out);
        out
    }

    fn to_literal(&self) -> String {
        let mut out = String::new();
        self.literal(&mut out);
        out
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Strings no field should choke on.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "a\u{0}b",
    "\u{1}\u{2}\u{1f}",
    "\n\r\t",
    "line\nbreak",
    "\u{7f}\u{80}\u{9f}",
    "\u{202e}gnp.exe",
    "💥🦀👩‍👩‍👧‍👦",
    "e\u{301}\u{301}\u{301}",
    "\u{fffd}\u{feff}\u{200b}",
    "\u{10ffff}",
    "ﷺ",
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "%",
    "_",
    "%_%\\",
    "\\",
    "\"",
    "{\"a\":1}",
    "[1,2",
    "null",
    "true",
    "NaN",
    "-1",
    "0",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "not-a-uuid",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "../../etc/passwd",
    "http://",
    "javascript:alert(1)",
    "https://user:pass@evil.example/",
    "http://[::1]:99999/",
    "data:text/html,x",
    "@",
    "a@",
    "a@b",
    " ADA@EXAMPLE.COM ",
    "#__graphql_file__:0",
    "#__graphql_file__:99",
    "tg_live_",
    "tg_live_00000000000000000000000000000000",
    "Bearer x",
    "BCDF-GHJK",
    "bcdfghjk",
    "MA==",
    "eyJhbGciOiJub25lIn0.e30.",
    "2026-02-30T00:00:00Z",
    "1.2.3.4/33",
    "::ffff:1.2.3.4/129",
];

/// Numbers for Int, Float and BigInt, right and wrong.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "50",
    "100",
    "101",
    "1000",
    "1001",
    "10000000",
    "10000001",
    "2147483647",
    "-2147483648",
    "2147483648",
    "-2147483649",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1.5",
    "-0.5",
    "0.0000001",
    "1e10",
    "1e308",
    "-1e308",
    "1e400",
    "-0",
];

// ----------------------------------------------------------------- schema

/// The exported SDL's types, with what the generator asks of them.
struct Sdl(SdlTypes);

impl Sdl {
    fn exported() -> Self {
        Self(SdlTypes::parse(&tollgate::graphql::export_sdl()))
    }

    fn fields(&self, type_name: &str) -> Vec<&FieldDefinition> {
        self.0.fields(type_name)
    }

    fn input_fields(&self, type_name: &str) -> Option<Vec<&InputValueDefinition>> {
        self.0.input_fields(type_name)
    }

    fn enum_values(&self, type_name: &str) -> Option<Vec<String>> {
        match self.0.types.get(type_name) {
            Some(TypeKind::Enum(e)) => Some(e.values.iter().map(|v| v.node.value.node.to_string()).collect()),
            _ => None,
        }
    }

    fn is_object(&self, type_name: &str) -> bool {
        matches!(self.0.types.get(type_name), Some(TypeKind::Object(_)))
    }
}

// --------------------------------------------------------------- fixtures

/// Real things the generator mixes in, so cases get past "not found".
#[derive(Default, Clone)]
struct Pools {
    organizations: Vec<String>,
    users: Vec<String>,
    keys: Vec<String>,
    invitations: Vec<String>,
    events: Vec<String>,
    sessions: Vec<String>,
    user_codes: Vec<String>,
    device_codes: Vec<String>,
    refresh_tokens: Vec<String>,
    public_url: String,
}

/// Who a case runs as.
#[derive(Clone)]
enum Caller {
    Anonymous,
    /// A verified user: each case gets a fresh session, since cases may
    /// log out or end sessions.
    User(Uuid),
    Admin(Uuid),
    ApiKey(String),
}

impl Caller {
    fn label(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::User(_) => "user",
            Caller::Admin(_) => "admin",
            Caller::ApiKey(_) => "api key",
        }
    }

    async fn token(&self, app: &TestApp) -> Option<String> {
        match self {
            Caller::Anonymous => None,
            Caller::User(id) | Caller::Admin(id) => Some(app.token_for(*id).await),
            Caller::ApiKey(secret) => Some(secret.clone()),
        }
    }
}

/// A fuzzing world: the app and the real objects in it.
struct World {
    app: TestApp,
    _stripe: FakeStripe,
    pools: Pools,
    callers: Vec<Caller>,
}

const CREATE_KEY: &str =
    "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }";

/// The string at `pointer` in a successful answer's data.
fn text_at(response: &GqlResponse, pointer: &str) -> String {
    response
        .data()
        .pointer(pointer)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {}", response.body))
        .to_owned()
}

async fn world() -> World {
    let stripe = FakeStripe::start().await;
    let mut vars = stripe.vars();
    // Deep cases, not the auth rate limit, are what this test is after.
    vars.push(("AUTH_RATE_LIMIT_PER_MINUTE".into(), "1000000".into()));
    let app = TestApp::spawn_with(TestAppOptions {
        vars,
        ..Default::default()
    })
    .await;
    // Sold through (the fake) Stripe, so checkouts get that far.
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE plans SET stripe_price_id = 'price_pro_monthly' WHERE key = 'pro'")
        .execute(&mut app.db().await)
        .await
        .expect("pricing the pro plan");

    let alice = register_verified(&app, "alice@fuzz.test").await;
    let bob = register(&app, "bob@fuzz.test").await;
    let carol = register(&app, "carol@fuzz.test").await;
    // With a real password, as `tollgate create-admin` makes one, so the
    // password checks of changePassword and deleteAccount run.
    let (admin, _) = tollgate::accounts::service::create_or_promote_admin(
        &app.state,
        "admin@fuzz.test",
        "admin's own long passphrase".into(),
        None,
    )
    .await
    .expect("an admin");
    let personal = personal_organization(&app, &alice.access).await;
    let team = create_org(&app, &alice.access, "Fuzz Team").await.to_string();
    add_member(&app, team.parse().unwrap(), bob.user_id, OrgRole::Member).await;

    // Every scope there is, so the key reaches every field keys may. It
    // lives in the personal organization, which no case can delete, and
    // its id stays out of the pools, so no case revokes it.
    let scopes = json!(Sdl::exported().enum_values("ApiKeyScope").expect("the scopes"));
    let input = json!({ "input": { "organizationId": personal, "name": "fuzz", "scopes": scopes } });
    let caller_key = text_at(
        &app.graphql_as(&alice.access, CREATE_KEY, input).await,
        "/createApiKey/secret",
    );
    let input = json!({ "input": { "organizationId": team, "name": "spare" } });
    let spare = text_at(
        &app.graphql_as(&alice.access, CREATE_KEY, input).await,
        "/createApiKey/apiKey/id",
    );
    let record = "mutation { recordUsage(input: { model: \"gpt-4o\", promptTokens: 10, completionTokens: 5 }) { event { id } } }";
    let event = text_at(
        &app.graphql_as(&caller_key, record, json!({})).await,
        "/recordUsage/event/id",
    );
    let invite = "mutation ($org: ID!) { inviteMember(organizationId: $org, email: \"dave@fuzz.test\") { id } }";
    let invited = app.graphql_as(&alice.access, invite, json!({ "org": team })).await;
    let sessions = app
        .graphql_as(&bob.access, "{ me { sessions { id } } }", json!({}))
        .await;
    let mut pools = Pools {
        organizations: vec![personal, team],
        users: vec![bob.user_id.to_string(), carol.user_id.to_string()],
        keys: vec![spare],
        invitations: vec![text_at(&invited, "/inviteMember/id")],
        events: vec![event],
        sessions: vec![text_at(&sessions, "/me/sessions/0/id")],
        refresh_tokens: vec![carol.refresh.clone()],
        public_url: app.url(""),
        ..Default::default()
    };
    for _ in 0..3 {
        let start = "mutation { startDeviceLogin(clientName: \"fuzz\") { deviceCode userCode } }";
        let started = app.graphql(start, json!({})).await;
        pools
            .device_codes
            .push(text_at(&started, "/startDeviceLogin/deviceCode"));
        pools.user_codes.push(text_at(&started, "/startDeviceLogin/userCode"));
    }

    World {
        app,
        _stripe: stripe,
        pools,
        callers: vec![
            Caller::Anonymous,
            Caller::User(alice.user_id),
            Caller::Admin(admin.id),
            Caller::ApiKey(caller_key),
        ],
    }
}

// -------------------------------------------------------------- generator

/// Makes operations from the SDL.
struct Generator<'a> {
    sdl: &'a Sdl,
    pools: &'a Pools,
    rng: Rng,
    serial: usize,
}

/// One generated operation.
struct Case {
    root: &'static str,
    field: String,
    query: String,
    variables: String,
}

impl Generator<'_> {
    /// An operation calling `field` of `root`.
    fn case(&mut self, root: &'static str, field: &FieldDefinition) -> Case {
        self.serial += 1;
        let as_variables = self.rng.chance(50);
        let mut declarations = Vec::new();
        let mut variables = Vec::new();
        let mut arguments = Vec::new();
        for argument in &field.arguments {
            let argument = &argument.node;
            let Some(value) = self.argument(&field.name.node, argument) else {
                continue;
            };
            let name = argument.name.node.as_str();
            if as_variables {
                declarations.push(format!("${name}: {}", argument.ty.node));
                variables.push(format!("{}:{}", quote(name), value.to_json()));
                arguments.push(format!("{name}: ${name}"));
            } else {
                arguments.push(format!("{name}: {}", value.to_literal()));
            }
        }
        // Now and then an argument the field does not have.
        if self.rng.chance(3) {
            arguments.push("bogus: 1".into());
        }
        let keyword = match root {
            "Query" => "query",
            "Mutation" => "mutation",
            _ => "subscription",
        };
        let mut query = String::new();
        let _ = write!(query, "{keyword} Fuzz{}", self.serial);
        if !declarations.is_empty() {
            let _ = write!(query, "({})", declarations.join(", "));
        }
        query.push_str(" { ");
        if self.rng.chance(20) {
            query.push_str("alias: ");
        }
        query.push_str(&field.name.node);
        if !arguments.is_empty() {
            let _ = write!(query, "({})", arguments.join(", "));
        }
        query.push_str(&self.selection(&field.ty.node, 1));
        if root == "Query" && self.rng.chance(10) {
            query.push_str(" __typename");
        }
        query.push_str(" }");
        Case {
            root,
            field: field.name.node.to_string(),
            query,
            variables: format!("{{{}}}", variables.join(",")),
        }
    }

    /// A value for an argument, or None to leave it out.
    fn argument(&mut self, field: &str, argument: &InputValueDefinition) -> Option<Val> {
        let optional = argument.ty.node.nullable || argument.default_value.is_some();
        if optional && self.rng.chance(35) {
            return None;
        }
        // Sometimes a required argument goes missing.
        if !optional && self.rng.chance(3) {
            return None;
        }
        Some(self.value(field, &argument.name.node, &argument.ty.node, 0))
    }

    fn value(&mut self, field: &str, name: &str, ty: &Type, depth: usize) -> Val {
        if self.rng.chance(3) {
            return self.wrong_kind();
        }
        if ty.nullable && self.rng.chance(10) {
            return Val::Null;
        }
        if let BaseType::List(inner) = &ty.base {
            let length = match self.rng.below(20) {
                0 => 0,
                1 => 40 + self.rng.below(80),
                2..=9 => 1,
                _ => 2 + self.rng.below(3),
            };
            return Val::List((0..length).map(|_| self.value(field, name, inner, depth + 1)).collect());
        }
        let base = base_name(ty);
        if let Some(fields) = self.sdl.input_fields(base) {
            let mut object = Vec::new();
            for input in fields {
                let required = !input.ty.node.nullable && input.default_value.is_none();
                if (required && !self.rng.chance(3)) || (!required && self.rng.chance(55)) {
                    object.push((
                        input.name.node.to_string(),
                        self.value(field, &input.name.node, &input.ty.node, depth + 1),
                    ));
                }
            }
            if self.rng.chance(3) {
                object.push(("bogus".into(), Val::Num("1".into())));
            }
            return Val::Obj(object);
        }
        if let Some(values) = self.sdl.enum_values(base) {
            return if self.rng.chance(90) {
                Val::Enum(self.rng.pick(&values).clone())
            } else {
                Val::Enum(self.rng.pick(&["NOPE", "owner", "", "ADMIN\u{0}"]).to_string())
            };
        }
        match base {
            "ID" => Val::Str(self.id(field, name)),
            "String" => Val::Str(self.string(field, name)),
            "Int" | "BigInt" | "Float" => self.number(name),
            "Boolean" => Val::Bool(self.rng.chance(50)),
            "DateTime" => Val::Str(self.date_time()),
            "JSON" => self.json(depth),
            "Upload" => Val::Str(self.rng.pick(&["#__graphql_file__:0", "file", ""]).to_string()),
            other => panic!("the generator knows no scalar {other}"),
        }
    }

    /// A value of another kind than the type asks for.
    fn wrong_kind(&mut self) -> Val {
        match self.rng.below(6) {
            0 => Val::Str(self.rng.pick(HOSTILE).to_string()),
            1 => Val::Num(self.rng.pick(NUMBERS).to_string()),
            2 => Val::Bool(true),
            3 => Val::List(vec![Val::Null, Val::Num("1".into())]),
            4 => Val::Obj(vec![("a".into(), Val::Str("b".into()))]),
            _ => Val::Enum("SOMETHING".into()),
        }
    }

    fn hostile_string(&mut self) -> String {
        match self.rng.below(10) {
            0 => {
                let unit = self.rng.pick(&["x", "é", "💥", "\u{0}", "'", "%", " "]);
                let length = *self
                    .rng
                    .pick(&[41, 101, 129, 201, 255, 256, 501, 1001, 2049, 5000, 70_000]);
                unit.repeat(length)
            }
            1 => {
                // Random characters from all over Unicode.
                let length = 1 + self.rng.below(40);
                (0..length)
                    .filter_map(|_| char::from_u32((self.rng.next() % 0x11_0000) as u32))
                    .collect()
            }
            _ => self.rng.pick(HOSTILE).to_string(),
        }
    }

    fn id(&mut self, field: &str, name: &str) -> String {
        if self.rng.chance(30) {
            return self.hostile_string();
        }
        if self.rng.chance(20) {
            return Uuid::new_v4().to_string();
        }
        let pools = self.pools;
        let pool: Vec<&String> = match (field, name) {
            (_, "organizationId") => pools.organizations.iter().collect(),
            (_, "userId" | "actorId") => pools.users.iter().collect(),
            (_, "apiKeyId") => pools.keys.iter().collect(),
            ("organization" | "updateOrganization" | "deleteOrganization", "id") => {
                pools.organizations.iter().collect()
            }
            ("user", "id") => pools.users.iter().collect(),
            ("revokeApiKey", "id") => pools.keys.iter().collect(),
            ("revokeInvitation", "id") => pools.invitations.iter().collect(),
            ("revokeSession", "id") => pools.sessions.iter().collect(),
            _ => pools
                .organizations
                .iter()
                .chain(&pools.users)
                .chain(&pools.keys)
                .chain(&pools.events)
                .collect(),
        };
        if pool.is_empty() {
            return Uuid::new_v4().to_string();
        }
        (*self.rng.pick(&pool)).clone()
    }

    fn string(&mut self, field: &str, name: &str) -> String {
        if self.rng.chance(45) {
            return self.hostile_string();
        }
        let pools = self.pools;
        let url = |path: &str| format!("{}{path}", pools.public_url);
        let plausible: Vec<String> = match name {
            "email" => vec!["bob@fuzz.test".into(), format!("new{}@fuzz.test", self.serial)],
            // The user's own password only where it cannot delete the account.
            "password" if field == "deleteAccount" => vec!["not the password".into()],
            "password" | "newPassword" | "currentPassword" => {
                vec![PASSWORD.into(), "another long passphrase".into()]
            }
            "name" | "displayName" | "clientName" | "provider" | "description" | "reason" => {
                vec!["Fuzz name".into(), "A".into()]
            }
            "slug" => vec!["fuzz-team".into(), format!("slug-{}", self.serial)],
            "planKey" | "key" => vec!["free".into(), "pro".into(), "enterprise".into(), "fuzzplan".into()],
            "model" | "id" | "aliases" | "allowedModels" => {
                vec!["gpt-4o".into(), "gpt-4o-2024-08-06".into(), "unknown-model".into()]
            }
            "currency" => vec!["usd".into(), "EUR".into()],
            "stripePriceId" => vec!["price_pro_monthly".into(), "price_x".into()],
            "successUrl" | "cancelUrl" | "returnUrl" => vec![url("/billing/done"), "https://evil.example/".into()],
            "avatarUrl" => vec!["https://example.com/a.png".into()],
            "userCode" => pools.user_codes.clone(),
            "deviceCode" => pools.device_codes.clone(),
            "refreshToken" => pools.refresh_tokens.clone(),
            "search" => vec!["fuzz".into(), "bob".into()],
            "action" => vec!["user.login".into(), "api_key.created".into()],
            "requestId" => vec![format!("req-{}", self.serial % 7)],
            "allowedIps" => vec!["10.0.0.0/8".into(), "::1".into(), "127.0.0.1".into()],
            "features" => vec!["Fast".into()],
            "after" => vec!["MA==".into(), "eyJ0IjoxfQ".into()],
            _ => Vec::new(),
        };
        if plausible.is_empty() {
            return self.hostile_string();
        }
        self.rng.pick(&plausible).clone()
    }

    fn number(&mut self, name: &str) -> Val {
        if name == "first" && self.rng.chance(50) {
            return Val::Num(self.rng.pick(&["-1", "0", "1", "2", "100", "101"]).to_string());
        }
        if self.rng.chance(5) {
            // BigInt also reads strings.
            return Val::Str(self.rng.pick(&["42", " 7 ", "9223372036854775808", "x"]).to_string());
        }
        Val::Num(self.rng.pick(NUMBERS).to_string())
    }

    fn date_time(&mut self) -> String {
        if self.rng.chance(40) {
            return self
                .rng
                .pick(&[
                    "9999-12-31T23:59:59Z",
                    "0001-01-01T00:00:00Z",
                    "1970-01-01T00:00:00Z",
                    "2262-04-11T23:47:16.854775807Z",
                    "2016-12-31T23:59:60Z",
                    "2026-02-30T00:00:00Z",
                    "2026-11-21T00:00:00+14:00",
                    "2026-11-21T00:00:00-23:59",
                    "tomorrow",
                    "",
                ])
                .to_string();
        }
        let offset = chrono::Duration::minutes(self.rng.below(200_000) as i64 - 100_000);
        (chrono::Utc::now() + offset).to_rfc3339()
    }

    fn json(&mut self, depth: usize) -> Val {
        match self.rng.below(9) {
            0 => Val::Null,
            1 => Val::Str(self.hostile_string()),
            2 => Val::Num(self.rng.pick(NUMBERS).to_string()),
            3 => {
                // Deeply nested.
                let levels = 20 + self.rng.below(120);
                let mut value = Val::Num("1".into());
                for _ in 0..levels {
                    value = if self.rng.chance(50) {
                        Val::List(vec![value])
                    } else {
                        Val::Obj(vec![("k".into(), value)])
                    };
                }
                value
            }
            4 => Val::List((0..self.rng.below(5)).map(|_| self.json(depth + 1)).collect()),
            _ if depth > 3 => Val::Bool(false),
            _ => {
                let fields = self.rng.below(5);
                Val::Obj(
                    (0..fields)
                        .map(|_| {
                            let key = if self.rng.chance(30) {
                                self.hostile_string()
                            } else {
                                format!("k{}", self.rng.below(5))
                            };
                            (key, self.json(depth + 1))
                        })
                        .collect(),
                )
            }
        }
    }

    /// A selection for a value of type `ty`: a few fields, nested, with
    /// arguments of their own.
    fn selection(&mut self, ty: &Type, depth: usize) -> String {
        let base = base_name(ty);
        if !self.sdl.is_object(base) {
            return String::new();
        }
        let fields = self.sdl.fields(base);
        let wanted = 1 + self.rng.below(4);
        let mut chosen: Vec<&FieldDefinition> = Vec::new();
        for _ in 0..wanted {
            let field = *self.rng.pick(&fields);
            let nested = self.sdl.is_object(base_name(&field.ty.node));
            if (depth >= MAX_DEPTH && nested) || chosen.iter().any(|c| c.name.node == field.name.node) {
                continue;
            }
            chosen.push(field);
        }
        let mut out = String::from(" { __typename");
        for field in chosen {
            let _ = write!(out, " {}", field.name.node);
            let arguments: Vec<String> = field
                .arguments
                .iter()
                .filter_map(|argument| {
                    let value = self.argument(&field.name.node, &argument.node)?;
                    Some(format!("{}: {}", argument.node.name.node, value.to_literal()))
                })
                .collect();
            if !arguments.is_empty() {
                let _ = write!(out, "({})", arguments.join(", "));
            }
            out.push_str(&self.selection(&field.ty.node, depth + 1));
        }
        if self.rng.chance(10) {
            let _ = write!(out, " ... on {base} {{ __typename }}");
        }
        out.push_str(" }");
        out
    }
}

// ------------------------------------------------------------------ check

/// What went wrong, deduplicated by kind.
#[derive(Default)]
struct Findings {
    seen: HashSet<String>,
    shown: Vec<String>,
    total: usize,
}

impl Findings {
    fn add(&mut self, kind: String, detail: String) {
        self.total += 1;
        if self.seen.insert(kind.clone()) && self.shown.len() < SHOWN_FAILURES {
            self.shown.push(format!("{kind}\n    {detail}"));
        }
    }
}

/// The problems in one answer: a 5xx, a body that is not GraphQL's, an
/// error without a code, or a code that means the server failed.
fn problems(status: u16, body: &str) -> Vec<String> {
    if status >= 500 {
        return vec![format!("HTTP {status}: {}", clip(body, 300))];
    }
    if status == 413 {
        return Vec::new();
    }
    let Ok(body) = serde_json::from_str::<Json>(body) else {
        return vec![format!("HTTP {status} without a JSON body: {}", clip(body, 300))];
    };
    errors_problems(&body["errors"])
}

fn errors_problems(errors: &Json) -> Vec<String> {
    let Some(errors) = errors.as_array() else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(|error| match error["extensions"]["code"].as_str() {
            None => Some(format!("an error without a code: {error}")),
            Some(code @ ("INTERNAL" | "SERVICE_UNAVAILABLE")) => Some(format!("{code}: {error}")),
            Some(_) => None,
        })
        .collect()
}

fn clip(text: &str, max: usize) -> String {
    let mut clipped: String = text.chars().take(max).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

// -------------------------------------------------------------- transport

/// User-Agent headers, from ordinary to hostile.
fn user_agent(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "x".repeat(8000),
        1 => "Mozilla/5.0 (X11; Linux x86_64) \u{e9}".into(),
        2 => "' OR 1=1 --".into(),
        _ => "tollgate-fuzz/1.0".into(),
    }
}

async fn send_http(world: &World, caller: &Caller, case: &Case, rng: &mut Rng) -> (u16, String) {
    let app = &world.app;
    let token = caller.token(app).await;
    // GET only for what fits a URL.
    let over_get = case.root == "Query" && case.query.len() + case.variables.len() < 4096 && rng.chance(10);
    let request = if over_get {
        let url = format!(
            "{}?query={}&variables={}",
            app.url("/graphql"),
            percent_encoding::utf8_percent_encode(&case.query, percent_encoding::NON_ALPHANUMERIC),
            percent_encoding::utf8_percent_encode(&case.variables, percent_encoding::NON_ALPHANUMERIC),
        );
        app.http().get(url)
    } else {
        let body = format!("{{\"query\":{},\"variables\":{}}}", quote(&case.query), case.variables);
        app.http()
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
    };
    answer(request.header("user-agent", user_agent(rng)), token).await
}

/// Sends `request` (with `token` as a bearer token) and reads the answer;
/// no answer at all reads as status 599.
async fn answer(mut request: reqwest::RequestBuilder, token: Option<String>) -> (u16, String) {
    SENT.fetch_add(1, Ordering::Relaxed);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(e) => (599, format!("no answer: {e}")),
    }
}

/// Raw bodies no generator of valid JSON writes.
const RAW_BODIES: &[&str] = &[
    "",
    "{",
    "null",
    "[]",
    "[{\"query\":\"{ plans { key } }\"}]",
    "{\"query\":\"{ organization(slug: \\\"\\ud800\\\") { id } }\"}",
    "{\"query\":\"query($s:String){ organization(slug:$s){ id } }\",\"variables\":{\"s\":\"\\ud800\"}}",
    "{\"query\":\"{ plans { key } }\",\"variables\":{\"x\":1e400}}",
    "{\"query\":\"{ plans { key } }\",\"variables\":\"not an object\"}",
    "{\"query\":123}",
    "{\"query\":\"{ plans { key } }\",\"operationName\":\"\\u0000\"}",
    "{\"query\":\"query($n:Int){ users(first:$n){ totalCount } }\",\"variables\":{\"n\":99999999999999999999}}",
    "{\"query\":\"{ __schema { types { name fields { name args { name } } } } }\"}",
    "{\"query\":\"{ __type(name: \\\"\\u0000\\\") { name } }\"}",
    "{\"query\":\"subscription { usageUpdated(organizationId: \\\"x\\\") { quota { tokensUsed } } }\"}",
];

async fn send_raw(world: &World, caller: &Caller, body: &'static [u8]) -> (u16, String) {
    let app = &world.app;
    let request = app
        .http()
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(body);
    answer(request, caller.token(app).await).await
}

/// Authorization headers, as bytes: odd schemes, forged keys and tokens,
/// bytes that are not text.
fn authorization_headers() -> Vec<Vec<u8>> {
    let mut headers: Vec<Vec<u8>> = [
        &b"Bearer"[..],
        b"Bearer ",
        b"bearer x",
        b"Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        b"Bearer tg_live_",
        b"Bearer tg_live_\xff\xfe",
        b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.x",
        b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        b"Bearer a b c",
        b"\xff",
    ]
    .iter()
    .map(|h| h.to_vec())
    .collect();
    headers.push(format!("Bearer {}", "A".repeat(7000)).into_bytes());
    headers
}

/// `{ me { id } }` with each of [`authorization_headers`].
async fn fuzz_authorization(world: &World, findings: &Mutex<Findings>) {
    for header in authorization_headers() {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(&header) else {
            continue;
        };
        let request = world
            .app
            .http()
            .post(world.app.url("/graphql"))
            .header("authorization", value)
            .json(&json!({ "query": "{ me { id } }" }));
        let (status, body) = answer(request, None).await;
        for problem in problems(status, &body) {
            findings.lock().unwrap().add(
                format!("authorization header: {}", clip(&problem, 200)),
                String::from_utf8_lossy(&header).into_owned(),
            );
        }
    }
    // connection_init payloads: a socket is acknowledged or closed with
    // 4403, nothing else.
    for payload in [
        json!({ "Authorization": 5 }),
        json!({ "Authorization": "Bearer \u{0}" }),
        json!({ "authorization": "Bearer tg_live_0000" }),
        json!({ "Authorization": ["Bearer x"] }),
        json!({ "Authorization": format!("Bearer {}", "A".repeat(100_000)) }),
        json!("not an object"),
        json!(null),
    ] {
        SENT.fetch_add(1, Ordering::Relaxed);
        let mut socket = ws::connect(&world.app, "graphql-transport-ws").await;
        ws::send(&mut socket, json!({ "type": "connection_init", "payload": payload })).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        let outcome = match answer {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("connection_ack") => None,
            Ok(Some(Ok(Message::Close(Some(frame))))) if u16::from(frame.code) == 4403 => None,
            other => Some(format!("{other:?}")),
        };
        if let Some(outcome) = outcome {
            findings.lock().unwrap().add(
                format!("connection_init answered {}", clip(&outcome, 200)),
                clip(&payload.to_string(), 200),
            );
        }
    }
}

/// A PNG signature followed by noise: what uploadAvatar is sent as a file.
async fn send_upload(world: &World, caller: &Caller, rng: &mut Rng) -> (u16, String) {
    let app = &world.app;
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let noise = rng.below(3000);
    bytes.extend((0..noise).map(|_| rng.next() as u8));
    let operations = json!({
        "query": "mutation ($f: Upload!) { uploadAvatar(file: $f) { avatarUrl } }",
        "variables": { "f": null },
    });
    let form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", json!({ "0": ["variables.f"] }).to_string())
        .part(
            "0",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("\u{202e}a\u{0}.png")
                .mime_str("image/png")
                .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new())),
        );
    let request = app.http().post(app.url("/graphql")).multipart(form);
    answer(request, caller.token(app).await).await
}

/// Runs `cases` cases of every Query and Mutation field as `caller` over
/// HTTP.
async fn fuzz_http(world: &World, sdl: &Sdl, caller: &Caller, seed: u64, cases: usize, findings: &Mutex<Findings>) {
    let mut generator = Generator {
        sdl,
        pools: &world.pools,
        rng: Rng(seed),
        serial: 0,
    };
    let mut transport = Rng(seed ^ 0x5eed);
    for root in ["Query", "Mutation"] {
        for field in sdl.fields(root) {
            for _ in 0..cases {
                let case = generator.case(root, field);
                let (status, body) = send_http(world, caller, &case, &mut transport).await;
                for problem in problems(status, &body) {
                    let kind = format!(
                        "{} {}.{}: {}",
                        caller.label(),
                        case.root,
                        case.field,
                        clip(&problem, 200)
                    );
                    let detail = format!("query: {}\n    variables: {}", case.query, clip(&case.variables, 600));
                    findings.lock().unwrap().add(kind, detail);
                }
            }
        }
    }
    for body in RAW_BODIES {
        let (status, answer) = send_raw(world, caller, body.as_bytes()).await;
        for problem in problems(status, &answer) {
            findings.lock().unwrap().add(
                format!("{} raw body: {}", caller.label(), clip(&problem, 200)),
                body.to_string(),
            );
        }
    }
    for _ in 0..cases {
        let (status, answer) = send_upload(world, caller, &mut transport).await;
        for problem in problems(status, &answer) {
            findings.lock().unwrap().add(
                format!("{} upload: {}", caller.label(), clip(&problem, 200)),
                String::new(),
            );
        }
    }
}

/// Runs cases of every root field (subscriptions included) as `caller`
/// over one graphql-transport-ws connection, in batches that fit the
/// per-connection cap.
async fn fuzz_ws(world: &World, sdl: &Sdl, caller: &Caller, seed: u64, cases: usize, findings: &Mutex<Findings>) {
    let mut generator = Generator {
        sdl,
        pools: &world.pools,
        rng: Rng(seed ^ 0x77_5353),
        serial: 10_000_000,
    };
    let mut batch: Vec<Case> = Vec::new();
    let mut all: Vec<Case> = Vec::new();
    for root in ["Subscription", "Query", "Mutation"] {
        let repeats = if root == "Subscription" { cases * 4 } else { 1 };
        for field in sdl.fields(root) {
            for _ in 0..repeats {
                all.push(generator.case(root, field));
            }
        }
    }
    let mut socket = None;
    for case in all {
        batch.push(case);
        if batch.len() == 20 {
            run_ws_batch(world, caller, &mut socket, std::mem::take(&mut batch), findings).await;
        }
    }
    if !batch.is_empty() {
        run_ws_batch(world, caller, &mut socket, batch, findings).await;
    }
}

async fn connect_ws(world: &World, caller: &Caller) -> ws::Socket {
    let mut socket = ws::connect(&world.app, "graphql-transport-ws").await;
    let payload = match caller.token(&world.app).await {
        Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
        None => json!({}),
    };
    ws::send(&mut socket, json!({ "type": "connection_init", "payload": payload })).await;
    assert_eq!(ws::receive(&mut socket).await["type"], "connection_ack");
    socket
}

async fn run_ws_batch(
    world: &World,
    caller: &Caller,
    socket: &mut Option<ws::Socket>,
    batch: Vec<Case>,
    findings: &Mutex<Findings>,
) {
    let mut live = match socket.take() {
        Some(socket) => socket,
        None => connect_ws(world, caller).await,
    };
    for (index, case) in batch.iter().enumerate() {
        let variables: Json = serde_json::from_str(&case.variables).unwrap_or(Json::Null);
        let message = json!({ "type": "subscribe", "id": index.to_string(),
            "payload": { "query": case.query, "variables": variables } })
        .to_string();
        // Bigger messages end the connection by design (the websocket's
        // message cap); the HTTP half sends such cases.
        if message.len() > WS_MESSAGE_CAP {
            continue;
        }
        if live.send(Message::text(message)).await.is_err() {
            break;
        }
        SENT.fetch_add(1, Ordering::Relaxed);
    }
    let closed = loop {
        let next = tokio::time::timeout(Duration::from_millis(700), live.next()).await;
        let Ok(Some(Ok(message))) = next else {
            // Quiet for a while (subscriptions wait for events), or gone.
            break next.is_ok();
        };
        match message {
            Message::Text(text) => {
                let value: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                let errors = match value["type"].as_str() {
                    Some("error") => value["payload"].clone(),
                    Some("next") => value["payload"]["errors"].clone(),
                    _ => Json::Null,
                };
                let case = value["id"]
                    .as_str()
                    .and_then(|id| id.parse::<usize>().ok())
                    .and_then(|i| batch.get(i));
                for problem in errors_problems(&errors) {
                    let (field, query) = case.map_or(("?".into(), String::new()), |c| {
                        (format!("{}.{}", c.root, c.field), c.query.clone())
                    });
                    findings.lock().unwrap().add(
                        format!("{} websocket {field}: {}", caller.label(), clip(&problem, 200)),
                        format!("query: {query}"),
                    );
                }
            }
            Message::Close(frame) => {
                let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                // 4403: the caller's credentials stopped working (a case
                // logged the session out); anything else is a failure.
                if code != 4403 {
                    findings.lock().unwrap().add(
                        format!("{} websocket closed with {code}", caller.label()),
                        format!("{frame:?}"),
                    );
                }
                break true;
            }
            _ => {}
        }
    };
    if closed {
        return;
    }
    // Ends what is still running, so the next batch fits the cap.
    for index in 0..batch.len() {
        let _ = live
            .send(Message::text(
                json!({ "type": "complete", "id": index.to_string() }).to_string(),
            ))
            .await;
    }
    *socket = Some(live);
}

/// Operations sent, for the closing line.
static SENT: AtomicUsize = AtomicUsize::new(0);

// ------------------------------------------------------------------ panics

/// Panics seen on the server's threads (named `fuzz-server-*`).
fn server_panics() -> &'static Mutex<Vec<String>> {
    static PANICS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static HOOK: OnceLock<()> = OnceLock::new();
    let panics = PANICS.get_or_init(|| Mutex::new(Vec::new()));
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if thread.name().is_some_and(|name| name.starts_with("fuzz-server")) {
                let panics = PANICS.get_or_init(|| Mutex::new(Vec::new()));
                if let Ok(mut panics) = panics.lock() {
                    panics.push(info.to_string());
                }
            }
            previous(info);
        }));
    });
    panics
}

// -------------------------------------------------------------------- test

#[test]
fn every_root_field_survives_hostile_arguments_for_every_kind_of_caller() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES);
    let panics = server_panics();
    // The server runs on threads of its own name, so the panic hook tells
    // its panics from those of tests running alongside.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name_fn(|| {
            static N: AtomicUsize = AtomicUsize::new(0);
            format!("fuzz-server-{}", N.fetch_add(1, Ordering::Relaxed))
        })
        .enable_all()
        .build()
        .expect("a runtime");
    // The recorder itself is checked: a panic on a server thread is seen.
    eprintln!("fuzz: a probe panics on a server thread now, on purpose");
    let probe = runtime.block_on(runtime.spawn(async { panic!("fuzz probe") }));
    assert!(probe.is_err());
    let probed = std::mem::take(&mut *panics.lock().unwrap());
    assert!(
        probed.len() == 1 && probed[0].contains("fuzz probe"),
        "the panic recorder saw {probed:?}"
    );

    let started = Instant::now();
    let (findings, requests) = runtime.block_on(async {
        let world = Arc::new(world().await);
        let sdl = Arc::new(Sdl::exported());
        let findings = Arc::new(Mutex::new(Findings::default()));
        let runs = world.callers.iter().enumerate().map(|(n, caller)| {
            let (world, sdl, findings) = (world.clone(), sdl.clone(), findings.clone());
            let caller = caller.clone();
            let seed = seed.wrapping_add(n as u64);
            async move {
                fuzz_http(&world, &sdl, &caller, seed, cases, &findings).await;
                fuzz_ws(&world, &sdl, &caller, seed, cases, &findings).await;
            }
        });
        futures_util::future::join_all(runs).await;
        fuzz_authorization(&world, &findings).await;
        let requests = SENT.load(Ordering::Relaxed);
        let findings = std::mem::take(&mut *findings.lock().unwrap());
        (findings, requests)
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    eprintln!(
        "fuzz: seed {seed:#x}, {cases} cases per field and caller, {requests} operations in {:.1?}",
        started.elapsed()
    );
    let panics = panics.lock().unwrap().clone();
    assert!(
        panics.is_empty(),
        "the server panicked (seed {seed:#x}):\n{}",
        panics.join("\n")
    );
    assert!(
        findings.total == 0,
        "{} failing answers (seed {seed:#x}); distinct ones:\n{}",
        findings.total,
        findings.shown.join("\n")
    );
}
