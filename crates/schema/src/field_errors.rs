//! Field errors as the GraphQL spec handles them: a field that fails is
//! `null` in `data` with its error listed, and a failure in a non-null
//! position makes its nearest nullable ancestor `null` (`data` itself when
//! there is none).
//!
//! async-graphql 7.2.1 does neither. Its executor drops the key of a field
//! whose resolver returned an error (nullable or not) and turns an object
//! whose every field failed into `null`: a member asking for
//! `organization { auditLog { ... } }` got `{"organization": null}`, and
//! `organization { name auditLog { ... } }` got an organization without an
//! `auditLog` key, which Apollo Client's cache, Relay and the mobile
//! clients read as a broken response. The cause is in
//! `resolver_utils::container` (a field future's `Err` is added to the
//! errors and its key skipped), so it hits every field, whichever resolver
//! or extension (the API key gate, say) raised the error.
//!
//! This extension sits around every field's resolution: an error of a
//! nullable field becomes `Ok(null)` and the error is kept here until the
//! execution's response is built; an error of a non-null field goes on to
//! the executor and is remembered until a nullable position above it (the
//! field of a parent, or an element of a list with nullable items) takes
//! it and becomes null.
//!
//! The same hook does what else must happen around every field, because
//! every extension in the schema costs a boxed future per field (some
//! 6,000 in an admin's organization list) whether or not it looks at
//! fields: the API key gate ([`crate::key_gate`], whose refusals are field
//! errors like any other), and a connection scope of the field's own
//! ([`tollgate_db::hold`]: sibling fields resolve concurrently in one task,
//! and each may hold a connection). Its execution hook also gives every
//! execution fresh loaders ([`crate::loaders::fresh_loaders`]), and its
//! parse hook runs the input guard ([`crate::input_guard`]) on each
//! parsed document, before the query limits look at it.

use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::{
    PathSegment, QueryPathNode, QueryPathSegment, Response, ServerError, ServerResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextResolve, ResolveInfo,
    },
    parser::types::ExecutableDocument,
};

use tollgate_auth::{KeyIdentity, Principal};

/// The schema extension around every field; register it outside every
/// extension that may fail a field, so it sees their errors.
pub struct FieldErrors;

impl ExtensionFactory for FieldErrors {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldErrorsExtension::default())
    }
}

/// One request's (or one subscription's) instance.
#[derive(Default)]
struct FieldErrorsExtension {
    caught: Mutex<Caught>,
    /// Whether `caught.unresolved` was ever non-empty: fields that succeed
    /// (nearly all of them) then need not take the lock.
    any_unresolved: AtomicBool,
    /// The caller's key, when the caller is one: read once per execution,
    /// not per field.
    key: OnceLock<Option<Arc<KeyIdentity>>>,
}

#[derive(Default)]
struct Caught {
    /// Errors of nullable fields answered as null; the executor never saw
    /// them, so the response gets them here.
    errors: Vec<ServerError>,
    /// Paths of failed non-null fields whose null has not found a nullable
    /// position to stop at yet.
    unresolved: Vec<Vec<PathSegment>>,
}

impl FieldErrorsExtension {
    fn caught(&self) -> MutexGuard<'_, Caught> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent data.
        self.caught.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The caller's key, if the caller is one.
    fn key(&self, ctx: &ExtensionContext<'_>) -> Option<&Arc<KeyIdentity>> {
        self.key
            .get_or_init(|| match ctx.data_opt::<Principal>() {
                Some(Principal::ApiKey(key)) => Some(key.clone()),
                _ => None,
            })
            .as_ref()
    }

    /// The field's own outcome: refused for a key that may not reach it,
    /// otherwise resolved in a connection scope of its own. An element of
    /// a list takes no connection itself (its fields do, each in a scope
    /// of their own), so it needs no scope.
    async fn run_field(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if let Some(key) = self.key(ctx)
            && let Some(refusal) = crate::key_gate::refusal(key, &info)
        {
            return Err(refusal);
        }
        if matches!(info.path_node.segment, QueryPathSegment::Index(_)) {
            next.run(ctx, info).await
        } else {
            tollgate_db::hold::scoped(next.run(ctx, info)).await
        }
    }
}

#[async_trait::async_trait]
impl Extension for FieldErrorsExtension {
    /// Argument values that would fail inside a resolver are refused
    /// before any runs.
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        crate::input_guard::guard(&ctx.schema_env.registry, document, variables)
    }

    /// Queries and mutations (over HTTP and websockets) and each event of
    /// a subscription pass here once.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = match crate::loaders::fresh_loaders(ctx) {
            Some(loaders) => next.run_with_data(ctx, operation_name, loaders).await,
            None => next.run(ctx, operation_name).await,
        };
        let caught = std::mem::take(&mut *self.caught());
        if !caught.unresolved.is_empty() {
            // Non-null all the way up to the root.
            response.data = Value::Null;
        }
        response.errors.extend(caught.errors);
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let return_type = info.return_type;
        let node = info.path_node;
        match self.run_field(ctx, info, next).await {
            Err(mut error) => {
                let path = response_path(node);
                if error.path.is_empty() {
                    error.path = path.clone();
                }
                let mut caught = self.caught();
                if is_nullable(return_type) {
                    caught.errors.push(error);
                    return Ok(Some(Value::Null));
                }
                caught.unresolved.push(path);
                self.any_unresolved.store(true, Ordering::Release);
                Err(error)
            }
            Ok(value) if !self.any_unresolved.load(Ordering::Acquire) => Ok(value),
            Ok(mut value) => {
                let mut caught = self.caught();
                if !caught.unresolved.is_empty()
                    && let Some(value) = value.as_mut()
                {
                    absorb(&mut caught.unresolved, &response_path(node), return_type, value);
                }
                Ok(value)
            }
        }
    }
}

/// The response path of a field, as errors carry it.
pub fn response_path(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path: Vec<PathSegment> = std::iter::once(node)
        .chain(node.parents())
        .map(|node| match node.segment {
            QueryPathSegment::Index(index) => PathSegment::Index(index),
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
        })
        .collect();
    path.reverse();
    path
}

/// Whether a qualified type name (`Organization`, `[Membership!]!`) takes
/// null.
fn is_nullable(qualified: &str) -> bool {
    !qualified.ends_with('!')
}

/// Lets the field at `path` (of type `ty`, resolved to `value`) take the
/// nulls of failed non-null fields below it: each one stops at the deepest
/// nullable position between them, the field itself or an element of its
/// list, and is then done with. Those with no nullable position here stay
/// for an ancestor.
fn absorb(unresolved: &mut Vec<Vec<PathSegment>>, path: &[PathSegment], ty: &str, value: &mut Value) {
    unresolved.retain(|failed| {
        let Some(below) = failed.strip_prefix(path).filter(|below| !below.is_empty()) else {
            return true;
        };
        let Some(depth) = nullable_position(ty, below) else {
            return true;
        };
        if let Some(position) = position_mut(value, &below[..depth]) {
            *position = Value::Null;
        }
        false
    });
}

/// How many list indices of `below` lead from a field of type `ty` to the
/// deepest position that takes null (0: the field itself); None when
/// every position is non-null.
fn nullable_position(ty: &str, below: &[PathSegment]) -> Option<usize> {
    let mut deepest = is_nullable(ty).then_some(0);
    let mut ty = ty.trim_end_matches('!');
    let mut depth = 0;
    while let Some(item) = ty.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        if !matches!(below.get(depth), Some(PathSegment::Index(_))) {
            break;
        }
        depth += 1;
        if is_nullable(item) {
            deepest = Some(depth);
        }
        ty = item.trim_end_matches('!');
    }
    deepest
}

/// The element that list indices lead to inside `value`.
fn position_mut<'v>(value: &'v mut Value, indices: &[PathSegment]) -> Option<&'v mut Value> {
    indices.iter().try_fold(value, |value, segment| match (value, segment) {
        (Value::List(items), PathSegment::Index(index)) => items.get_mut(*index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};
    use serde_json::json;

    use super::*;

    struct Query;

    #[derive(SimpleObject)]
    struct Leaf {
        ok: i32,
    }

    struct Parent;

    #[Object]
    impl Parent {
        async fn name(&self) -> &str {
            "parent"
        }
        async fn optional(&self) -> async_graphql::Result<Option<i32>> {
            Err("optional failed".into())
        }
        async fn required(&self) -> async_graphql::Result<i32> {
            Err("required failed".into())
        }
        async fn child(&self) -> Parent {
            Parent
        }
        async fn items(&self) -> Vec<Option<Parent>> {
            vec![Some(Parent), Some(Parent)]
        }
        async fn strict_items(&self) -> Vec<Parent> {
            vec![Parent, Parent]
        }
        async fn leaf(&self) -> async_graphql::Result<Option<Leaf>> {
            Ok(Some(Leaf { ok: 1 }))
        }
    }

    #[Object]
    impl Query {
        async fn parent(&self) -> Option<Parent> {
            Some(Parent)
        }
        async fn strict(&self) -> Parent {
            Parent
        }
    }

    fn schema(with_extension: bool) -> Schema<Query, EmptyMutation, EmptySubscription> {
        let builder = Schema::build(Query, EmptyMutation, EmptySubscription);
        if with_extension {
            builder.extension(FieldErrors).finish()
        } else {
            builder.finish()
        }
    }

    async fn run(query: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
        let response = schema(true).execute(query).await;
        let data = serde_json::to_value(&response.data).unwrap();
        let paths = response
            .errors
            .iter()
            .map(|e| serde_json::to_value(&e.path).unwrap())
            .collect();
        (data, paths)
    }

    #[tokio::test]
    async fn a_failed_nullable_field_is_null_and_its_parent_stays() {
        let (data, paths) = run("{ parent { optional } }").await;
        assert_eq!(data, json!({ "parent": { "optional": null } }));
        assert_eq!(paths, vec![json!(["parent", "optional"])]);
        let (data, _) = run("{ parent { name optional } }").await;
        assert_eq!(data, json!({ "parent": { "name": "parent", "optional": null } }));
    }

    #[tokio::test]
    async fn without_the_extension_the_executor_drops_the_key() {
        // What this extension is for: async-graphql alone.
        let response = schema(false).execute("{ parent { name optional } }").await;
        let data = serde_json::to_value(&response.data).unwrap();
        assert_eq!(data, json!({ "parent": { "name": "parent" } }));
    }

    #[tokio::test]
    async fn a_failed_non_null_field_nulls_the_nearest_nullable_ancestor() {
        let (data, paths) = run("{ parent { name child { required } } }").await;
        assert_eq!(data, json!({ "parent": null }));
        assert_eq!(paths, vec![json!(["parent", "child", "required"])]);
    }

    #[tokio::test]
    async fn a_nullable_list_item_takes_the_null_of_its_fields() {
        let (data, _) = run("{ parent { items { name required } } }").await;
        assert_eq!(data, json!({ "parent": { "items": [null, null] } }));
        let (data, _) = run("{ parent { name strictItems { required } } }").await;
        assert_eq!(data, json!({ "parent": null }));
    }

    #[tokio::test]
    async fn non_null_all_the_way_up_nulls_data_and_siblings_are_kept_otherwise() {
        let (data, paths) = run("{ strict { required } }").await;
        assert_eq!(data, json!(null));
        assert_eq!(paths, vec![json!(["strict", "required"])]);
        let (data, _) = run("{ strict { optional leaf { ok } } parent { name } }").await;
        assert_eq!(
            data,
            json!({ "strict": { "optional": null, "leaf": { "ok": 1 } }, "parent": { "name": "parent" } })
        );
    }

    #[test]
    fn nullable_positions_follow_the_type() {
        let index = |i| PathSegment::Index(i);
        let field = || PathSegment::Field("x".to_owned());
        assert_eq!(nullable_position("T", &[field()]), Some(0));
        assert_eq!(nullable_position("T!", &[field()]), None);
        assert_eq!(nullable_position("[T!]", &[index(0), field()]), Some(0));
        assert_eq!(nullable_position("[T]!", &[index(1), field()]), Some(1));
        assert_eq!(nullable_position("[[T]!]!", &[index(0), index(2), field()]), Some(2));
        assert_eq!(nullable_position("[T!]!", &[index(0), field()]), None);
    }
}
