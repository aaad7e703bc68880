//! Refuses, before any resolver (and so any SQL) runs, argument values
//! that would otherwise fail inside one, or reach a table unbounded.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold U+0000: a statement that
//! binds one fails as a whole ("invalid byte sequence for encoding UTF8:
//! 0x00"), which a resolver would report as INTERNAL. Rather than every
//! resolver checking every string, this check walks the parsed
//! document once, with the schema's types: every argument of every field
//! and directive, literal or variable (or a variable's default), down
//! through lists, input objects and the inside of JSON values, keys
//! included.
//!
//! The same walk refuses what validation lets through: any value for an
//! input object given in a variable (a number where `RegisterInput` goes),
//! which then failed while the resolver read its arguments, with an error
//! naming no field; JSON nested too deep to be read back once stored; and
//! any string over [`MAX_STRING_BYTES`], a backstop under each field's own
//! limit. (An `Upload` given a plain string is left to the resolver, after
//! the API-key gate: it fails there as BAD_USER_INPUT.)
//!
//! A refusal is BAD_USER_INPUT naming the argument or input-object field,
//! as the contract names fields elsewhere (a JSON scalar's own keys are
//! data, so the field holding the JSON is named), with the index in a list
//! argument. It runs for every transport, since HTTP and websockets share
//! the executor.

use std::collections::HashSet;

use async_graphql::{
    Name, Pos, Positioned, ServerError, ServerResult, Variables,
    parser::types::{Directive, ExecutableDocument, OperationDefinition, Selection, SelectionSet},
    registry::{MetaInputValue, MetaType, MetaTypeName, Registry},
};
use async_graphql_value::{ConstValue, Value};

use crate::request::server_error;
use tollgate_core::error::AppError;

/// The character PostgreSQL text cannot store.
const NUL: char = '\0';

/// Refuses `document` when an argument value would fail inside a
/// resolver; see the module documentation. Called by the parse hook of
/// [`crate::field_errors::FieldErrors`] right after parsing: one extension
/// less in the schema is one boxed future less per field.
pub fn guard(
    registry: &Registry,
    document: ExecutableDocument,
    variables: &Variables,
) -> ServerResult<ExecutableDocument> {
    match find_refusal(registry, &document, variables) {
        Some(refusal) => Err(refusal.into_error()),
        None => Ok(document),
    }
}

/// Why an argument value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It holds U+0000.
    Nul,
    /// An input object was given something else.
    NotAnObject,
    /// A JSON value nests deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// A string is longer than [`MAX_STRING_BYTES`].
    TooLong,
}

/// The longest string any argument takes, whatever its field: a backstop
/// under each field's own limit (names 100 characters, URLs 2048, ...), so
/// that no field, including one added later without a limit, passes more
/// to its resolver or its table. JSON values have their own size limits.
pub const MAX_STRING_BYTES: usize = 8 * 1024;

/// How deep a JSON argument may nest. Stored JSON is read back with
/// serde_json, which refuses more than 128 levels: a deeper value would be
/// written and then never readable again (a profile or an organization
/// whose every read fails). Nobody's settings need more than a few levels.
pub const MAX_JSON_DEPTH: usize = 32;

/// An argument value refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong with it.
    pub reason: Reason,
    /// The argument or input-object field that holds it.
    pub field: String,
    /// Its position in a list argument (recordUsageBatch's inputs).
    pub index: Option<usize>,
    /// Where the argument is in the document.
    pub pos: Pos,
}

impl Refusal {
    fn message(&self) -> String {
        let field = &self.field;
        match self.reason {
            Reason::Nul => format!("{field} must not contain the character U+0000"),
            Reason::NotAnObject => format!("{field} must be an object"),
            Reason::TooDeep => format!("{field} must not nest deeper than {MAX_JSON_DEPTH} levels"),
            Reason::TooLong => format!("{field} must be at most {MAX_STRING_BYTES} bytes"),
        }
    }

    fn into_error(self) -> ServerError {
        let mut error = AppError::bad_input(self.field.clone(), self.message());
        if let Some(index) = self.index {
            error = error.at_index(index);
        }
        let mut error = server_error(error);
        error.locations = vec![self.pos];
        error
    }
}

/// What is wrong inside one argument: the reason and the field named.
type Found = (Reason, String);

/// The first refused argument value of any operation of `document`, with
/// `variables` (and the operations' variable defaults) filled in.
pub fn find_refusal(registry: &Registry, document: &ExecutableDocument, variables: &Variables) -> Option<Refusal> {
    document.operations.iter().find_map(|(_, operation)| {
        let root = match operation.node.ty {
            async_graphql::parser::types::OperationType::Query => Some(registry.query_type.as_str()),
            async_graphql::parser::types::OperationType::Mutation => registry.mutation_type.as_deref(),
            async_graphql::parser::types::OperationType::Subscription => registry.subscription_type.as_deref(),
        };
        let mut walk = Walk {
            registry,
            document,
            variables,
            operation: &operation.node,
            fragments_seen: HashSet::new(),
        };
        walk.directives(&operation.node.directives)
            .or_else(|| walk.selection_set(&operation.node.selection_set.node, root))
    })
}

/// One operation's walk: its variables, and the fragments it already
/// looked at (each is walked once, so spreads cannot multiply the work,
/// and a cycle, refused later by validation, cannot loop).
struct Walk<'a> {
    registry: &'a Registry,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    operation: &'a OperationDefinition,
    fragments_seen: HashSet<&'a Name>,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, parent: Option<&'a str>) -> Option<Refusal> {
        for item in &set.items {
            let found = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let meta = parent
                        .and_then(|name| self.registry.types.get(name))
                        .and_then(|ty| ty.field_by_name(&field.name.node));
                    self.directives(&field.directives)
                        .or_else(|| {
                            field.arguments.iter().find_map(|(name, value)| {
                                let ty = meta
                                    .and_then(|m| m.args.get(name.node.as_str()))
                                    .map(|arg| arg.ty.as_str());
                                self.argument(name, value, ty)
                            })
                        })
                        .or_else(|| {
                            let child = meta.map(|m| MetaTypeName::concrete_typename(&m.ty));
                            self.selection_set(&field.selection_set.node, child)
                        })
                }
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let on = fragment.type_condition.as_ref().map(|c| c.node.on.node.as_str());
                    self.directives(&fragment.directives)
                        .or_else(|| self.selection_set(&fragment.selection_set.node, on.or(parent)))
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    self.directives(&spread.node.directives).or_else(|| {
                        let fragment = self.document.fragments.get(name)?;
                        if !self.fragments_seen.insert(name) {
                            return None;
                        }
                        let fragment = &fragment.node;
                        let on = fragment.type_condition.node.on.node.as_str();
                        self.directives(&fragment.directives)
                            .or_else(|| self.selection_set(&fragment.selection_set.node, Some(on)))
                    })
                }
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    fn directives(&self, directives: &[Positioned<Directive>]) -> Option<Refusal> {
        directives.iter().find_map(|directive| {
            let meta = self.registry.directives.get(directive.node.name.node.as_str());
            directive.node.arguments.iter().find_map(|(name, value)| {
                let ty = meta
                    .and_then(|m| m.args.get(name.node.as_str()))
                    .map(|arg| arg.ty.as_str());
                self.argument(name, value, ty)
            })
        })
    }

    /// One argument, `ty` its declared type (None when the document names
    /// an argument the schema lacks: validation refuses it later, but its
    /// strings are still checked, naming the argument).
    fn argument(&self, name: &Positioned<Name>, value: &Positioned<Value>, ty: Option<&str>) -> Option<Refusal> {
        let field = name.node.as_str();
        let refusal = |(reason, field): Found, index| Refusal {
            reason,
            field,
            index,
            pos: name.pos,
        };
        let value = self.resolve(&value.node);
        match (&value, ty) {
            // A list argument also says which element, as recordUsageBatch
            // does for its inputs.
            (ConstValue::List(items), Some(ty)) if MetaTypeName::create(ty).unwrap_non_null().is_list() => {
                let item_ty = strip_list(ty);
                items.iter().enumerate().find_map(|(index, item)| {
                    self.value(item, Some(item_ty), field)
                        .map(|found| refusal(found, Some(index)))
                })
            }
            _ => self.value(&value, ty, field).map(|found| refusal(found, None)),
        }
    }

    /// The value with its variables filled in: a variable the request does
    /// not give takes its declared default, or null.
    fn resolve(&self, value: &Value) -> ConstValue {
        value
            .clone()
            .into_const_with(|name| Ok::<_, std::convert::Infallible>(self.variable(&name).unwrap_or_default()))
            .unwrap_or_default()
    }

    fn variable(&self, name: &Name) -> Option<ConstValue> {
        if let Some(value) = self.variables.get(name) {
            return Some(value.clone());
        }
        self.operation
            .variable_definitions
            .iter()
            .find(|definition| definition.node.name.node == *name)
            .and_then(|definition| definition.node.default_value.as_ref())
            .map(|default| default.node.clone())
    }

    /// What is wrong inside `value` of type `ty` (which `field` names), if
    /// anything, and the field that holds it.
    fn value(&self, value: &ConstValue, ty: Option<&str>, field: &str) -> Option<Found> {
        let named = ty.map(MetaTypeName::concrete_typename);
        let meta = named.and_then(|name| self.registry.types.get(name));
        match (value, meta) {
            (ConstValue::Null, _) => None,
            (ConstValue::List(items), _) => {
                let item_ty = ty.map(strip_list);
                items.iter().find_map(|item| self.value(item, item_ty, field))
            }
            (ConstValue::Object(fields), Some(MetaType::InputObject { input_fields, .. })) => {
                fields.iter().find_map(|(key, item)| {
                    if key.contains(NUL) {
                        return Some((Reason::Nul, field.to_owned()));
                    }
                    let meta: Option<&MetaInputValue> = input_fields.get(key.as_str());
                    self.value(item, meta.map(|m| m.ty.as_str()), key.as_str())
                })
            }
            (_, Some(MetaType::InputObject { .. })) => Some((Reason::NotAnObject, field.to_owned())),
            (value, meta) if is_json(meta) && depth(value) > MAX_JSON_DEPTH => {
                Some((Reason::TooDeep, field.to_owned()))
            }
            (ConstValue::String(s), meta) if s.len() > MAX_STRING_BYTES && !is_json(meta) => {
                Some((Reason::TooLong, field.to_owned()))
            }
            // Scalars (JSON included), enums, and values of unknown type.
            (value, _) => holds_nul(value).then(|| (Reason::Nul, field.to_owned())),
        }
    }
}

/// Whether the type is the JSON scalar, whose objects are data.
fn is_json(meta: Option<&MetaType>) -> bool {
    matches!(meta, Some(MetaType::Scalar { name, .. }) if name == "JSON")
}

/// The element type of a list type (`[T!]!` -> `T!`); the type itself when
/// it is not a list (a single value given for a list is coerced to one).
fn strip_list(ty: &str) -> &str {
    let ty = ty.strip_suffix('!').unwrap_or(ty);
    ty.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(ty)
}

/// How many lists and objects nest inside each other in `value`.
fn depth(value: &ConstValue) -> usize {
    match value {
        ConstValue::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        ConstValue::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether any string (or object key) inside `value` holds U+0000.
fn holds_nul(value: &ConstValue) -> bool {
    match value {
        ConstValue::String(s) => s.contains(NUL),
        ConstValue::Enum(name) => name.contains(NUL),
        ConstValue::List(items) => items.iter().any(holds_nul),
        ConstValue::Object(fields) => fields.iter().any(|(k, v)| k.contains(NUL) || holds_nul(v)),
        ConstValue::Null | ConstValue::Number(_) | ConstValue::Boolean(_) | ConstValue::Binary(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::Request;
    use serde_json::{Value as Json, json};

    use super::MAX_JSON_DEPTH;
    use crate::{QueryLimits, build_schema};

    /// What the schema answers, with no application data attached: the
    /// guard runs before any resolver, so a refusal is its answer.
    async fn run(query: &str, variables: Json) -> Json {
        let schema = build_schema(QueryLimits::default());
        let request = Request::new(query).variables(async_graphql::Variables::from_json(variables));
        serde_json::to_value(schema.execute(request).await).unwrap()
    }

    /// `(field, index)` of a NUL refusal; None when the guard let it by.
    fn refusal(response: &Json) -> Option<(String, Option<u64>)> {
        let error = response["errors"]
            .as_array()?
            .iter()
            .find(|e| e["message"].as_str().is_some_and(|m| m.contains("U+0000")))?;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
        Some((
            error["extensions"]["field"].as_str()?.to_owned(),
            error["extensions"]["index"].as_u64(),
        ))
    }

    fn named(field: &str) -> Option<(String, Option<u64>)> {
        Some((field.to_owned(), None))
    }

    #[tokio::test]
    async fn literals_and_variables_name_the_argument_or_input_field() {
        let literal = run(r#"{ organization(slug: "a\u0000") { id } }"#, json!({})).await;
        assert_eq!(refusal(&literal), named("slug"));
        let variable = run(
            "mutation ($i: RegisterInput!) { register(input: $i) { accessToken } }",
            json!({ "i": { "email": "a@b.c", "password": "p", "name": "Ada\u{0}" } }),
        )
        .await;
        assert_eq!(refusal(&variable), named("name"));
        let default = run(
            "query ($s: String = \"\\u0000\") { organization(slug: $s) { id } }",
            json!({}),
        )
        .await;
        assert_eq!(refusal(&default), named("slug"));
    }

    #[tokio::test]
    async fn json_values_are_searched_keys_included_and_name_their_field() {
        let input = |metadata: Json| json!({ "i": { "model": "m", "promptTokens": 1, "completionTokens": 1, "metadata": metadata } });
        let query = "mutation ($i: RecordUsageInput!) { recordUsage(input: $i) { duplicate } }";
        let key = run(query, input(json!({ "a\u{0}": 1 }))).await;
        assert_eq!(refusal(&key), named("metadata"));
        let deep = run(query, input(json!({ "a": [1, { "b": "\u{0}" }] }))).await;
        assert_eq!(refusal(&deep), named("metadata"));
    }

    #[tokio::test]
    async fn list_arguments_say_which_element() {
        let ok = json!({ "model": "m", "promptTokens": 1, "completionTokens": 1 });
        let bad = json!({ "model": "m", "promptTokens": 1, "completionTokens": 1, "requestId": "\u{0}" });
        let response = run(
            "mutation ($i: [RecordUsageInput!]!) { recordUsageBatch(inputs: $i) { duplicate } }",
            json!({ "i": [ok, bad] }),
        )
        .await;
        assert_eq!(refusal(&response), Some(("requestId".to_owned(), Some(1))));
    }

    #[tokio::test]
    async fn fragments_and_nested_fields_are_searched() {
        let spread = run(
            r#"query { ...F } fragment F on Query { organization(slug: "\u0000") { id } }"#,
            json!({}),
        )
        .await;
        assert_eq!(refusal(&spread), named("slug"));
        let nested = run(
            r#"query ($m: String) { me { memberships { organization { usageEvents(model: $m) { totalCount } } } } }"#,
            json!({ "m": "gpt\u{0}" }),
        )
        .await;
        assert_eq!(refusal(&nested), named("model"));
    }

    /// `(message, field)` of the first error.
    fn first_error(response: &Json) -> (String, String) {
        let error = &response["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{response}");
        (
            error["message"].as_str().unwrap_or_default().to_owned(),
            error["extensions"]["field"].as_str().unwrap_or_default().to_owned(),
        )
    }

    #[tokio::test]
    async fn input_objects_given_something_else_name_their_field() {
        let number = run(
            "mutation ($i: RegisterInput!) { register(input: $i) { accessToken } }",
            json!({ "i": 7 }),
        )
        .await;
        assert_eq!(
            first_error(&number),
            ("input must be an object".to_owned(), "input".to_owned())
        );
        let in_batch = run(
            "mutation ($i: [RecordUsageInput!]!) { recordUsageBatch(inputs: $i) { duplicate } }",
            json!({ "i": [{ "model": "m", "promptTokens": 1, "completionTokens": 1 }, "x"] }),
        )
        .await;
        assert_eq!(in_batch["errors"][0]["extensions"]["index"], 1, "{in_batch}");
    }

    #[tokio::test]
    async fn json_nesting_is_bounded_so_what_is_stored_can_be_read_back() {
        let nested = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!({ "k": value });
            }
            value
        };
        let query = "mutation ($p: JSON) { updateProfile(input: { preferences: $p }) { id } }";
        let deep = run(query, json!({ "p": nested(MAX_JSON_DEPTH + 1) })).await;
        assert_eq!(
            first_error(&deep),
            (
                format!("preferences must not nest deeper than {MAX_JSON_DEPTH} levels"),
                "preferences".to_owned()
            )
        );
        let fine = run(query, json!({ "p": nested(MAX_JSON_DEPTH) })).await;
        assert!(!fine.to_string().contains("nest deeper"), "{fine}");
    }

    #[tokio::test]
    async fn no_string_argument_is_longer_than_the_backstop() {
        let query = "query ($s: String) { users(search: $s) { totalCount } }";
        let long = run(query, json!({ "s": "x".repeat(super::MAX_STRING_BYTES + 1) })).await;
        assert_eq!(
            first_error(&long),
            (
                format!("search must be at most {} bytes", super::MAX_STRING_BYTES),
                "search".to_owned()
            )
        );
        let fine = run(query, json!({ "s": "x".repeat(super::MAX_STRING_BYTES) })).await;
        assert!(!fine.to_string().contains("bytes"), "{fine}");
    }

    #[tokio::test]
    async fn clean_requests_pass() {
        let response = run(r#"{ organization(slug: "acme") { id } }"#, json!({})).await;
        assert_eq!(refusal(&response), None);
        let unknown = run(r#"{ nothing(x: "ok") }"#, json!({})).await;
        assert_eq!(refusal(&unknown), None);
    }
}
