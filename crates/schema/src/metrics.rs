//! The schema extension that counts GraphQL operations by type, name and
//! outcome and times queries and mutations, over HTTP and websockets alike.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_graphql::{
    Request, Response, ServerResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe,
    },
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use futures_util::{StreamExt, stream::BoxStream};

use tollgate_auth::AppState;
use tollgate_platform::metrics::Metrics;

/// Counts and times every GraphQL operation into the app's
/// [`Metrics`]. Register it before the extension that labels
/// errors with their codes (the first extension is the outermost), so that
/// it sees the codes.
pub struct GraphqlMetrics;

impl ExtensionFactory for GraphqlMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetrics::default())
    }
}

/// One request's (or one websocket operation's) extension instance.
#[derive(Default)]
struct OperationMetrics {
    seen: Arc<Mutex<Seen>>,
}

/// What is known about the operation so far.
#[derive(Default)]
struct Seen {
    /// The app's metrics, found once the request data is attached.
    metrics: Option<Metrics>,
    /// The operationName the client asked for.
    requested: Option<String>,
    /// Type and name, once the document parsed.
    operation: Option<(&'static str, Option<String>)>,
    recorded: bool,
}

impl Seen {
    /// Counts the operation once: at its (first) response, or when it ends
    /// without one.
    fn record(&mut self, response: Option<&Response>, elapsed: Option<Duration>) {
        if self.recorded {
            return;
        }
        let Some(metrics) = &self.metrics else { return };
        self.recorded = true;
        let (kind, name) = match &self.operation {
            Some((kind, Some(name))) => (*kind, name.as_str()),
            Some((kind, None)) => (*kind, "anonymous"),
            None => ("unknown", "unknown"),
        };
        let outcome = match response {
            Some(response) => outcome(response),
            None if kind == "subscription" => "ok".to_owned(),
            None => "cancelled".to_owned(),
        };
        let elapsed = elapsed.filter(|_| kind != "subscription");
        metrics.record_operation(kind, name, &outcome, elapsed);
    }
}

#[async_trait::async_trait]
impl Extension for OperationMetrics {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        lock(&self.seen).record(Some(&response), Some(started.elapsed()));
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Websocket operations (queries and mutations too) come this way.
        let started = Instant::now();
        let guard = RecordOnDrop(self.seen.clone());
        next.run(ctx, stream)
            .map(move |response| {
                lock(&guard.0).record(Some(&response), Some(started.elapsed()));
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        lock(&self.seen).requested = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // The request's data (the app among it) is attached by now.
        let metrics = ctx.data_opt::<AppState>().map(|app| app.metrics().clone());
        let document = next.run(ctx, query, variables).await;
        let mut seen = lock(&self.seen);
        seen.metrics = metrics;
        if let Ok(document) = &document {
            seen.operation = chosen_operation(document, seen.requested.as_deref());
        }
        document
    }
}

/// Counts a websocket operation that ends before its first response.
struct RecordOnDrop(Arc<Mutex<Seen>>);

impl Drop for RecordOnDrop {
    fn drop(&mut self) {
        lock(&self.0).record(None, None);
    }
}

/// The operation that runs: the requested one, or the only one. Its name
/// comes from the document, so labels are GraphQL names, never free text.
fn chosen_operation(document: &ExecutableDocument, requested: Option<&str>) -> Option<(&'static str, Option<String>)> {
    match &document.operations {
        DocumentOperations::Single(operation) => Some((kind_label(operation.node.ty), None)),
        DocumentOperations::Multiple(operations) => {
            let (name, operation) = match requested {
                Some(requested) => operations.iter().find(|(name, _)| name.as_str() == requested)?,
                None if operations.len() == 1 => operations.iter().next()?,
                None => return None,
            };
            Some((kind_label(operation.node.ty), Some(name.to_string())))
        }
    }
}

fn kind_label(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// `ok`, or the first error's `extensions.code` (codes are a fixed set of
/// upper-case words; anything else is counted as `OTHER`).
fn outcome(response: &Response) -> String {
    let Some(error) = response.errors.first() else {
        return "ok".to_owned();
    };
    let code = error.extensions.as_ref().and_then(|extensions| extensions.get("code"));
    match code {
        Some(Value::String(code))
            if !code.is_empty() && code.len() <= 40 && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            code.clone()
        }
        _ => "OTHER".to_owned(),
    }
}

/// A poisoned lock only means a panic elsewhere mid-update; what was seen
/// is still worth counting.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("a valid document")
    }

    #[test]
    fn the_operation_is_the_requested_or_the_only_one() {
        let anonymous = parse("{ me { id } }");
        assert_eq!(chosen_operation(&anonymous, None), Some(("query", None)));
        let two = parse("query A { me { id } } mutation B { logout }");
        assert_eq!(
            chosen_operation(&two, Some("B")),
            Some(("mutation", Some("B".to_owned())))
        );
        assert_eq!(chosen_operation(&two, None), None);
        assert_eq!(chosen_operation(&two, Some("missing")), None);
        let one = parse("subscription Watch { usageUpdated(organizationId: \"x\") { quota { tokensUsed } } }");
        assert_eq!(
            chosen_operation(&one, None),
            Some(("subscription", Some("Watch".to_owned())))
        );
    }

    #[test]
    fn outcomes_are_codes_or_other() {
        assert_eq!(outcome(&Response::default()), "ok");
        let mut error = async_graphql::ServerError::new("no", None);
        let mut response = Response::from_errors(vec![error.clone()]);
        assert_eq!(outcome(&response), "OTHER");
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "NOT_FOUND");
        response = Response::from_errors(vec![error.clone()]);
        assert_eq!(outcome(&response), "NOT_FOUND");
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "made up\n");
        response = Response::from_errors(vec![error]);
        assert_eq!(outcome(&response), "OTHER");
    }
}
