//! Long lists of plain data answered in one pass, without a future per
//! field.
//!
//! async-graphql resolves every field of every list element as a boxed
//! future wrapped in the schema's extension hook, and every element of a
//! list as another: an admin's `organizations(first: 100) { … members {
//! role user { name email } } }` was some 5,500 futures for 136 KB, about
//! four microseconds each, where the data was all in hand after three
//! statements. A type whose fields are plain data (columns of rows already
//! loaded, never failing, never gated per field) implements
//! [`PlainObject`], and a list of it answers the selection by walking it
//! directly ([`object`]): fields, aliases, fragments (spread and inline)
//! and `__typename`, merged as the executor merges them.
//!
//! Anything else falls back to the executor for the whole list: a field
//! the type does not answer plainly (one that loads, checks access or may
//! fail), a custom directive on a field. `@skip` and `@include` never get
//! here: async-graphql removes the selections they exclude before
//! execution. So the plain path answers exactly what the executor would,
//! only faster, and [`crate::field_errors`]'s hook has nothing to do for
//! these fields: they cannot fail, and an API key's gate
//! ([`crate::key_gate`]) looks only at root fields and Organization's.

use async_graphql::{
    ContextSelectionSet, Name, Value,
    indexmap::{IndexMap, map::Entry},
    parser::types::{Field, Selection, SelectionSet},
};

/// An object type whose fields, or most of them, are plain data.
pub trait PlainObject {
    /// The GraphQL type's name, for `__typename` and fragments' type
    /// conditions.
    const TYPE_NAME: &'static str;

    /// The value of `field` (with its own selection, for an object), or
    /// None when the field is not plain data: the caller then resolves the
    /// whole list through the executor.
    fn field(&self, ctx: &ContextSelectionSet<'_>, field: &Field) -> Option<Value>;
}

/// The answer to `selection_set` on `item`, as the executor would give it;
/// None when some selected field is not plain.
pub fn object<T: PlainObject>(ctx: &ContextSelectionSet<'_>, selection_set: &SelectionSet, item: &T) -> Option<Value> {
    let mut answer = IndexMap::with_capacity(selection_set.items.len());
    collect(ctx, selection_set, item, &mut answer)?;
    if answer.is_empty() {
        // What the executor answers when every field was skipped.
        return Some(Value::Null);
    }
    Some(Value::Object(answer))
}

fn collect<T: PlainObject>(
    ctx: &ContextSelectionSet<'_>,
    selection_set: &SelectionSet,
    item: &T,
    answer: &mut IndexMap<Name, Value>,
) -> Option<()> {
    for selection in &selection_set.items {
        let (type_condition, fragment_selection) = match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                if !field.directives.is_empty() {
                    return None;
                }
                let value = if field.name.node == "__typename" {
                    Value::String(T::TYPE_NAME.to_owned())
                } else {
                    item.field(ctx, field)?
                };
                merge(answer, field.response_key().node.clone(), value);
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let fragment = ctx.query_env.fragments.get(&spread.node.fragment_name.node)?;
                (
                    Some(&fragment.node.type_condition.node.on.node),
                    &fragment.node.selection_set,
                )
            }
            Selection::InlineFragment(fragment) => (
                fragment
                    .node
                    .type_condition
                    .as_ref()
                    .map(|condition| &condition.node.on.node),
                &fragment.node.selection_set,
            ),
        };
        // The schema has no interfaces or unions, so a fragment applies
        // exactly when it names this type (or no type).
        if type_condition.is_none_or(|on| on.as_str() == T::TYPE_NAME) {
            collect(ctx, &fragment_selection.node, item, answer)?;
        }
    }
    Some(())
}

/// Adds one field's value under its response key, merging a key selected
/// twice as the executor does (`resolver_utils::container::insert_value`):
/// objects field by field, lists element by element, the first value of
/// anything else kept.
fn merge(answer: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    let previous = match answer.entry(key) {
        Entry::Vacant(vacant) => {
            vacant.insert(value);
            return;
        }
        Entry::Occupied(occupied) => occupied.into_mut(),
    };
    match (previous, value) {
        (Value::Object(previous), Value::Object(more)) => {
            for (key, value) in more {
                merge(previous, key, value);
            }
        }
        (Value::List(previous), Value::List(more)) => {
            for (previous, value) in previous.iter_mut().zip(more) {
                if let (Value::Object(previous), Value::Object(more)) = (previous, value) {
                    for (key, value) in more {
                        merge(previous, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Holding a [`PlainObject`] to what the executor answers.

    use std::{borrow::Cow, marker::PhantomData};

    use async_graphql::{
        ContextSelectionSet, EmptyMutation, EmptySubscription, ObjectType, OutputType, Positioned, Request, Schema,
        ServerError, ServerResult, Value, Variables, parser::types::Field, registry::Registry,
    };

    use super::{PlainObject, object};

    /// `T` answered only plainly, as GraphQL type `G`: a field `T` does not
    /// answer plainly is an error, so a test sees it.
    pub(crate) struct PlainOnly<T, G>(pub T, pub PhantomData<G>);

    impl<T: PlainObject + Send + Sync, G: OutputType> OutputType for PlainOnly<T, G> {
        fn type_name() -> Cow<'static, str> {
            G::type_name()
        }

        fn create_type_info(registry: &mut Registry) -> String {
            G::create_type_info(registry)
        }

        async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
            object(ctx, &ctx.item.node, &self.0)
                .ok_or_else(|| ServerError::new("not answered plainly", Some(field.pos)))
        }
    }

    /// Runs every shape of selection of `fields` on `type_name` through
    /// root fields `executor` and `plain` of `query` and asserts the two
    /// answers are the same and without errors: all the fields, aliases,
    /// a key selected twice, fragments inline and spread, `__typename`,
    /// `@skip` and `@include`, and every field skipped.
    pub(crate) async fn assert_same_answers<Q: ObjectType + 'static>(
        query: Q,
        type_name: &str,
        fields: &[&str],
        executor: &str,
        plain: &str,
    ) {
        let schema = Schema::new(query, EmptyMutation, EmptySubscription);
        let all = fields.join(" ");
        let first = fields[0];
        let shapes = [
            all.clone(),
            format!("a: {first} b: {first} {first} ... on {type_name} {{ {all} }} ... {{ __typename }} ...Named"),
            format!("{first} @skip(if: $yes) again: {first} @include(if: $yes) t: __typename"),
            format!("{first} @include(if: false)"),
        ];
        for shape in shapes {
            let fragment = if shape.contains("...Named") {
                format!("fragment Named on {type_name} {{ {all} __typename }}")
            } else {
                String::new()
            };
            let variables = if shape.contains("$yes") { "($yes: Boolean!)" } else { "" };
            let text = format!(
                "query {variables} {{ executor: {executor} {{ {shape} }} plain: {plain} {{ {shape} }} }} {fragment}"
            );
            let request = Request::new(text).variables(Variables::from_json(serde_json::json!({ "yes": true })));
            let response = schema.execute(request).await;
            assert!(response.errors.is_empty(), "{shape}: {:?}", response.errors);
            let data = response.data.into_json().unwrap();
            assert_eq!(data["executor"], data["plain"], "{shape}");
        }
    }
}
