//! Query limits and error codes for failures that happen before any
//! resolver runs: parse errors, validation errors, and documents over the
//! depth, cost or alias limits; and the caps on what one query (or one
//! subscription event) may do while it runs: SQL statements and the size
//! of its answer.

use std::{
    io,
    sync::{Arc, OnceLock},
};

use futures_util::{StreamExt, stream::BoxStream};

use async_graphql::{
    Name, Response, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest, NextSubscribe,
        NextValidation,
    },
    parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet},
};

use crate::cost::CostModel;
use tollgate_core::error::ErrorCode;
use tollgate_db::pool::OperationStatements;

/// Limits on what one document may ask for, and on what one query may do.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Maximum nesting of selections.
    pub max_depth: usize,
    /// Maximum cost (see [`crate::cost`]).
    pub max_complexity: usize,
    /// Maximum aliased fields; aliases are how one request multiplies work.
    pub max_aliases: usize,
    /// Whether `__schema` / `__type` may be queried.
    pub introspection: bool,
    /// SQL statements one query or subscription event may run. The cost
    /// bounds the objects asked for, not the statements behind them: a
    /// field read per parent (not batched) runs once per parent.
    pub max_statements: u64,
    /// Bytes of JSON one query answer or subscription event may take.
    pub max_response_bytes: usize,
}

use tollgate_core::config::limits::{
    DEFAULT_MAX_COMPLEXITY, DEFAULT_MAX_DEPTH, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_STATEMENTS,
};

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_complexity: DEFAULT_MAX_COMPLEXITY,
            max_aliases: 50,
            introspection: true,
            max_statements: DEFAULT_MAX_STATEMENTS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// Fields that check a guessable secret, by kind: at most one of each kind
/// per request, so aliases cannot multiply guesses past the rate limits.
const ONE_PER_REQUEST: &[(&[&str], &str)] = &[
    (
        &["login", "register", "changePassword", "deleteAccount", "resetPassword"],
        "a request may check at most one password",
    ),
    (
        &["deviceLogin", "approveDeviceLogin", "denyDeviceLogin"],
        "a request may use at most one device user code",
    ),
];

/// Sets `extensions.code` when an error has none.
pub fn ensure_code(error: &mut ServerError, code: ErrorCode) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code.as_str());
    }
}

/// The extension that enforces [`QueryLimits`] and labels early errors.
pub struct Limits {
    limits: QueryLimits,
    cost_model: Arc<CostModel>,
}

impl Limits {
    /// Enforces `limits`, pricing documents with `cost_model`.
    pub fn new(limits: QueryLimits, cost_model: CostModel) -> Self {
        Self {
            limits,
            cost_model: Arc::new(cost_model),
        }
    }
}

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsExtension {
            limits: self.limits,
            cost_model: self.cost_model.clone(),
            document: OnceLock::new(),
        })
    }
}

/// One request's (or one subscription's) view of the limits.
struct LimitsExtension {
    limits: QueryLimits,
    cost_model: Arc<CostModel>,
    /// What parsing learnt, for validation and execution.
    document: OnceLock<DocumentFacts>,
}

struct DocumentFacts {
    cost: u64,
    operations: Vec<(Option<Name>, OperationType)>,
}

impl LimitsExtension {
    /// Whether the operation that runs is a mutation: its answer is always
    /// delivered, since what it changed is done. Unknown counts as one.
    fn runs_mutation(&self, operation_name: Option<&str>) -> bool {
        let Some(facts) = self.document.get() else {
            return true;
        };
        facts
            .operations
            .iter()
            .find(|(name, _)| operation_name.is_none_or(|wanted| name.as_deref() == Some(wanted)))
            .is_none_or(|(_, ty)| *ty == OperationType::Mutation)
    }

    fn refusal_over_limits(&self, result: &ValidationResult) -> Option<String> {
        let limits = self.limits;
        let cost = self.document.get().map_or(0, |facts| facts.cost);
        if result.depth > limits.max_depth {
            Some(format!(
                "the query is nested {} deep; the limit is {}",
                result.depth, limits.max_depth
            ))
        } else if cost > u64::try_from(limits.max_complexity).unwrap_or(u64::MAX) {
            Some(format!(
                "the query's cost is {cost}; the limit is {}. A list counts what each item selects times its \
                 page size (`first`), or 10 without one: ask for smaller pages or fewer nested lists",
                limits.max_complexity
            ))
        } else {
            None
        }
    }
}

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
        if !self.limits.introspection && root_fields.iter().any(|name| matches!(*name, "__schema" | "__type")) {
            let mut error = ServerError::new("introspection is disabled on this server", None);
            ensure_code(&mut error, ErrorCode::GraphqlValidationFailed);
            return Err(error);
        }
        for (fields, message) in ONE_PER_REQUEST {
            if root_fields.iter().filter(|name| fields.contains(name)).count() > 1 {
                let mut error = ServerError::new(*message, None);
                ensure_code(&mut error, ErrorCode::BadUserInput);
                return Err(error);
            }
        }
        let aliases = count_aliases(&document);
        if aliases > self.limits.max_aliases {
            let mut error = ServerError::new(
                format!(
                    "the query uses {aliases} aliases; at most {} are allowed",
                    self.limits.max_aliases
                ),
                None,
            );
            ensure_code(&mut error, ErrorCode::QueryTooComplex);
            return Err(error);
        }
        // Priced now, while the variables are at hand; refused after
        // validation, so a document that is wrong hears that first.
        let facts = DocumentFacts {
            cost: self.cost_model.cost(&document, variables),
            operations: document
                .operations
                .iter()
                .map(|(name, operation)| (name.cloned(), operation.node.ty))
                .collect(),
        };
        let _ = self.document.set(facts);
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
        match self.refusal_over_limits(&result) {
            Some(message) => Err(vec![too_complex(message)]),
            None => Ok(result),
        }
    }

    /// Runs a query, or builds one subscription event, within the statement
    /// and size caps. A mutation runs uncapped: refusing its answer would
    /// hide what it did.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if self.runs_mutation(operation_name) {
            return next.run(ctx, operation_name).await;
        }
        let statements = OperationStatements::new(self.limits.max_statements);
        // Dropping the execution stops it at its next await: no statement
        // after the one over the cap starts in this task.
        let response = tokio::select! {
            biased;
            () = statements.over_limit() => None,
            response = statements.scope(next.run(ctx, operation_name)) => Some(response),
        };
        let response = match response {
            Some(response) if !statements.exceeded() => response,
            _ => {
                return Response::from_errors(vec![too_complex(format!(
                    "the query needs more than {} database statements; ask for fewer lists or smaller pages at once",
                    self.limits.max_statements
                ))]);
            }
        };
        if let Some(cap) = ctx.data_opt::<Arc<AnswerCap>>() {
            cap.hold_to(self.limits.max_response_bytes);
            return response;
        }
        if !fits_in(&response, self.limits.max_response_bytes) {
            return Response::from_errors(vec![answer_too_large(self.limits.max_response_bytes)]);
        }
        response
    }
}

/// The size cap of a query's answer, for a transport that checks it on the
/// bytes it writes (HTTP, [`crate::http`]). Measuring an answer means
/// serializing it: an admin's page of organizations is 136 KB, and doing
/// it here and again on the way out cost a tenth of that read's
/// instructions each time. Where the request carries none (websockets),
/// the extension measures the answer itself.
#[derive(Debug, Default)]
pub struct AnswerCap(OnceLock<usize>);

impl AnswerCap {
    /// The most bytes the answer's JSON may take; None when it is not held
    /// to any (a mutation's answer is always delivered, since what it
    /// changed is done; a request refused before execution is small).
    pub fn bytes(&self) -> Option<usize> {
        self.0.get().copied()
    }

    fn hold_to(&self, max: usize) {
        // One execution per request: a second call would set the same cap.
        let _ = self.0.set(max);
    }
}

/// The refusal of an answer (or subscription event) whose JSON would take
/// more than `max` bytes.
pub(crate) fn answer_too_large(max: usize) -> ServerError {
    too_complex(format!(
        "the answer would be larger than {max} bytes; ask for fewer fields or smaller pages at once"
    ))
}

/// A QUERY_TOO_COMPLEX error outside any field.
fn too_complex(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    ensure_code(&mut error, ErrorCode::QueryTooComplex);
    error
}

/// Whether the response's JSON takes at most `max` bytes; stops writing as
/// soon as it does not.
fn fits_in(response: &Response, max: usize) -> bool {
    serde_json::to_writer(Capped::new(max, io::sink()), response).is_ok()
}

/// `value`'s JSON, or None when it would take more than `max` bytes (found
/// out as soon as it does, not after writing it all).
pub(crate) fn json_within<T: serde::Serialize>(value: &T, max: usize) -> Option<Vec<u8>> {
    let mut json = Capped::new(max, Vec::with_capacity(max.min(4096)));
    serde_json::to_writer(&mut json, value).ok()?;
    Some(json.sink)
}

/// A writer that fails once more than its room has been written to it.
struct Capped<W> {
    room: usize,
    sink: W,
}

impl<W> Capped<W> {
    fn new(room: usize, sink: W) -> Self {
        Self { room, sink }
    }
}

impl<W: io::Write> io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    // serde_json writes every quote and comma with `write_all`; the default
    // one loops over `write`, which showed in the profile of a large answer.
    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.room = self
            .room
            .checked_sub(buf.len())
            .ok_or_else(|| io::Error::other("over the size cap"))?;
        self.sink.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
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
/// introspection switch and the one-guess-per-request rules look at.
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
