//! Query limits and error codes for failures that happen before any
//! resolver runs: parse errors, validation errors, and documents over the
//! depth, complexity or alias limits.

use std::sync::Arc;

use futures_util::{StreamExt, stream::BoxStream};

use async_graphql::{
    Response, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe, NextValidation,
    },
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

use crate::error::ErrorCode;

/// Limits on what one document may ask for.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Maximum nesting of selections.
    pub max_depth: usize,
    /// Maximum total field cost.
    pub max_complexity: usize,
    /// Maximum aliased fields; aliases are how one request multiplies work.
    pub max_aliases: usize,
    /// Whether `__schema` / `__type` may be queried.
    pub introspection: bool,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_complexity: 2000,
            max_aliases: 50,
            introspection: true,
        }
    }
}

/// Fields that check a password: one per request, so aliases cannot
/// multiply guesses.
const PASSWORD_FIELDS: &[&str] = &["login", "register", "changePassword", "deleteAccount", "resetPassword"];

/// Sets `extensions.code` when an error has none.
pub fn ensure_code(error: &mut ServerError, code: ErrorCode) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
}

/// The extension that enforces [`QueryLimits`] and labels early errors.
pub struct Limits(pub QueryLimits);

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsExtension(self.0))
    }
}

struct LimitsExtension(QueryLimits);

#[async_trait::async_trait]
impl Extension for LimitsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            let code = uncoded_error_code(&error.message);
            ensure_code(error, code);
        }
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                for error in &mut response.errors {
                    let code = uncoded_error_code(&error.message);
                    ensure_code(error, code);
                }
                response
            })
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await.map_err(|mut error| {
            ensure_code(&mut error, ErrorCode::GraphqlParseFailed);
            error
        })?;
        let root_fields = root_field_names(&document);
        if !self.0.introspection && root_fields.iter().any(|name| matches!(*name, "__schema" | "__type")) {
            let mut error = ServerError::new("introspection is disabled on this server", None);
            ensure_code(&mut error, ErrorCode::GraphqlValidationFailed);
            return Err(error);
        }
        if root_fields.iter().filter(|name| PASSWORD_FIELDS.contains(name)).count() > 1 {
            let mut error = ServerError::new("a request may check at most one password", None);
            ensure_code(&mut error, ErrorCode::BadUserInput);
            return Err(error);
        }
        let aliases = count_aliases(&document);
        if aliases > self.0.max_aliases {
            let mut error = ServerError::new(
                format!(
                    "the query uses {aliases} aliases; at most {} are allowed",
                    self.0.max_aliases
                ),
                None,
            );
            ensure_code(&mut error, ErrorCode::QueryTooComplex);
            return Err(error);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                label_validation_error(error);
            }
            errors
        })?;
        let limits = self.0;
        let refusal = if result.depth > limits.max_depth {
            Some(format!(
                "the query is nested {} deep; the limit is {}",
                result.depth, limits.max_depth
            ))
        } else if result.complexity > limits.max_complexity {
            Some(format!(
                "the query's complexity is {}; the limit is {}",
                result.complexity, limits.max_complexity
            ))
        } else {
            None
        };
        match refusal {
            Some(message) => {
                let mut error = ServerError::new(message, None);
                ensure_code(&mut error, ErrorCode::QueryTooComplex);
                Err(vec![error])
            }
            None => Ok(result),
        }
    }
}

/// The code of an error async-graphql raised itself (ours always carry
/// one): coercing the client's variables and arguments is the input's
/// fault, choosing an operation that is not there is a validation failure,
/// anything else is ours.
fn uncoded_error_code(message: &str) -> ErrorCode {
    if ["Failed to parse", "Variable ", "Invalid value", "Expected input type"]
        .iter()
        .any(|p| message.starts_with(p))
    {
        ErrorCode::BadUserInput
    } else if message.starts_with("Operation name required")
        || message.starts_with("Unknown operation")
        // A subscription sent over HTTP: it needs the websocket.
        || message.starts_with("Subscriptions are not supported")
    {
        ErrorCode::GraphqlValidationFailed
    } else {
        ErrorCode::Internal
    }
}

/// A wrong argument value (literal or variable) is the input's fault:
/// BAD_USER_INPUT naming the argument or input field, as the contract
/// asks. Every other validation failure is GRAPHQL_VALIDATION_FAILED.
fn label_validation_error(error: &mut ServerError) {
    // async-graphql words these `Invalid value for argument "input.email", ...`.
    let field = error
        .message
        .strip_prefix("Invalid value for argument \"")
        .and_then(|rest| rest.split('"').next())
        .and_then(|path| path.rsplit('.').find(|segment| segment.parse::<usize>().is_err()))
        .map(str::to_owned);
    match field {
        Some(field) => {
            ensure_code(error, ErrorCode::BadUserInput);
            let extensions = error.extensions.get_or_insert_with(Default::default);
            extensions.set("field", field);
        }
        None => ensure_code(error, ErrorCode::GraphqlValidationFailed),
    }
}

/// The names of the fields every operation selects at its root (through
/// inline fragments and fragment spreads), aliased or not: what the
/// introspection switch and the one-password-per-request rule look at.
pub fn root_field_names(document: &ExecutableDocument) -> Vec<&str> {
    fn collect<'d>(set: &'d SelectionSet, document: &'d ExecutableDocument, depth: usize, names: &mut Vec<&'d str>) {
        // Fragment cycles are refused in validation, which runs later.
        if depth > 8 {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => names.push(field.node.name.node.as_str()),
                Selection::InlineFragment(fragment) => {
                    collect(&fragment.node.selection_set.node, document, depth + 1, names)
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                        collect(&fragment.node.selection_set.node, document, depth + 1, names);
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    for (_, operation) in document.operations.iter() {
        collect(&operation.node.selection_set.node, document, 0, &mut names);
    }
    names
}

/// Aliased fields in every operation and fragment of the document.
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    fn walk(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    usize::from(field.node.alias.is_some()) + walk(&field.node.selection_set.node)
                }
                Selection::InlineFragment(fragment) => walk(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, op)| walk(&op.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|f| walk(&f.node.selection_set.node))
        .sum();
    operations + fragments
}
