//! Refuses U+0000 anywhere in a request's arguments, before any resolver
//! (and so any SQL) runs.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold U+0000: a statement that
//! binds one fails as a whole ("invalid byte sequence for encoding UTF8:
//! 0x00"), which a resolver would report as INTERNAL. Rather than every
//! resolver checking every string, this extension walks the parsed
//! document once, with the schema's types: every argument of every field
//! and directive, literal or variable (or a variable's default), down
//! through lists, input objects and the inside of JSON values, keys
//! included. The refusal is BAD_USER_INPUT naming the argument or
//! input-object field, as the contract names fields elsewhere; a JSON
//! scalar's own keys are data, so the field holding the JSON is named.
//! It runs for every transport, since HTTP and websockets share the
//! executor.

use std::{collections::HashSet, sync::Arc};

use async_graphql::{
    Name, Pos, Positioned, ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{Directive, ExecutableDocument, OperationDefinition, Selection, SelectionSet},
    registry::{MetaInputValue, MetaType, MetaTypeName, Registry},
};
use async_graphql_value::{ConstValue, Value};

use crate::{
    error::{AppError, ErrorCode},
    graphql::limits::ensure_code,
};

/// The character PostgreSQL text cannot store.
const NUL: char = '\0';

/// The extension; see the module documentation.
pub struct InputGuard;

impl ExtensionFactory for InputGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(InputGuardExtension)
    }
}

struct InputGuardExtension;

#[async_trait::async_trait]
impl Extension for InputGuardExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        match find_nul(&ctx.schema_env.registry, &document, variables) {
            Some(found) => Err(found.into_error()),
            None => Ok(document),
        }
    }
}

/// Where a U+0000 was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NulFound {
    /// The argument or input-object field that holds it.
    pub field: String,
    /// Its position in a list argument (recordUsageBatch's inputs).
    pub index: Option<usize>,
    /// Where the argument is in the document.
    pub pos: Pos,
}

impl NulFound {
    fn into_error(self) -> ServerError {
        let mut error = AppError::bad_input(
            self.field.clone(),
            format!("{} must not contain the character U+0000", self.field),
        );
        if let Some(index) = self.index {
            error = error.at_index(index);
        }
        let error = error.into_graphql();
        let mut server_error = ServerError::new(error.message, Some(self.pos));
        server_error.extensions = error.extensions;
        ensure_code(&mut server_error, ErrorCode::BadUserInput);
        server_error
    }
}

/// The first U+0000 in an argument of any operation of `document`, with
/// `variables` (and the operations' variable defaults) filled in.
pub fn find_nul(registry: &Registry, document: &ExecutableDocument, variables: &Variables) -> Option<NulFound> {
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
    fn selection_set(&mut self, set: &'a SelectionSet, parent: Option<&'a str>) -> Option<NulFound> {
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

    fn directives(&self, directives: &[Positioned<Directive>]) -> Option<NulFound> {
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
    fn argument(&self, name: &Positioned<Name>, value: &Positioned<Value>, ty: Option<&str>) -> Option<NulFound> {
        let field = name.node.as_str();
        let found = |field: String, index| NulFound {
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
                items
                    .iter()
                    .enumerate()
                    .find_map(|(index, item)| self.value(item, Some(item_ty), field).map(|f| found(f, Some(index))))
            }
            _ => self.value(&value, ty, field).map(|f| found(f, None)),
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

    /// The name of the field holding a U+0000 inside `value` of type `ty`
    /// (which `field` names), if any.
    fn value(&self, value: &ConstValue, ty: Option<&str>, field: &str) -> Option<String> {
        let named = ty.map(MetaTypeName::concrete_typename);
        let input_fields = named.and_then(|name| match self.registry.types.get(name) {
            Some(MetaType::InputObject { input_fields, .. }) => Some(input_fields),
            _ => None,
        });
        match (value, input_fields) {
            (ConstValue::List(items), _) => {
                let item_ty = ty.map(strip_list);
                items.iter().find_map(|item| self.value(item, item_ty, field))
            }
            (ConstValue::Object(fields), Some(input_fields)) => fields.iter().find_map(|(key, item)| {
                let meta: Option<&MetaInputValue> = input_fields.get(key.as_str());
                if key.contains(NUL) {
                    return Some(field.to_owned());
                }
                self.value(item, meta.map(|m| m.ty.as_str()), key.as_str())
            }),
            // Scalars (JSON included), enums, and objects of unknown type.
            (value, _) => holds_nul(value).then(|| field.to_owned()),
        }
    }
}

/// The element type of a list type (`[T!]!` -> `T!`); the type itself when
/// it is not a list (a single value given for a list is coerced to one).
fn strip_list(ty: &str) -> &str {
    let ty = ty.strip_suffix('!').unwrap_or(ty);
    ty.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(ty)
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

    use crate::graphql::{QueryLimits, build_schema};

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

    #[tokio::test]
    async fn clean_requests_pass() {
        let response = run(r#"{ organization(slug: "acme") { id } }"#, json!({})).await;
        assert_eq!(refusal(&response), None);
        let unknown = run(r#"{ nothing(x: "ok") }"#, json!({})).await;
        assert_eq!(refusal(&unknown), None);
    }
}
