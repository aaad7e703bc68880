//! What a document costs to answer: roughly the number of objects and
//! values it can make the server produce.
//!
//! A field costs 1 plus its children, and a list field multiplies its
//! children by how many items it can return: a paginated field (one with
//! `first`) by its page size (`first`, capped at
//! [`MAX_PAGE_SIZE`](tollgate_db::pagination::MAX_PAGE_SIZE), read from
//! variables too), any other list by [`UNPAGED_LIST_FAN_OUT`]. The lists of
//! a paginated field's connection (`edges`, `nodes`) hold that same page,
//! so they do not multiply again. Fragment spreads count each time they are
//! spread. Introspection fields (`__schema`, `__type` and everything under
//! them, `__typename`) are not in the SDL, so they cost 1 each and never
//! multiply: the standard introspection query stays cheap.
//!
//! The model is read from the schema's own SDL rather than annotated field
//! by field, so a list field added later is priced as a list without anyone
//! remembering to say so.

use std::collections::{HashMap, HashSet};

use async_graphql::{
    Name, Value, Variables,
    parser::types::{
        BaseType, ExecutableDocument, Field, OperationDefinition, OperationType, Selection, SelectionSet, Type,
        TypeKind, TypeSystemDefinition,
    },
};

use tollgate_db::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// How many items an unpaginated list (members, apiKeys, sessions, ...) is
/// assumed to hold.
pub const UNPAGED_LIST_FAN_OUT: u64 = 10;

/// How many times a field's children are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FanOut {
    /// A single value, or a list that holds a page counted already.
    One,
    /// A paginated field: its page size.
    Page,
    /// A list without `first`.
    UnpagedList,
}

#[derive(Debug, Clone)]
struct FieldShape {
    /// The named type the field's selection set selects on.
    returns: Name,
    fan_out: FanOut,
}

/// The shapes of every output field of a schema, for pricing documents.
#[derive(Debug, Clone, Default)]
pub struct CostModel {
    types: HashMap<Name, HashMap<Name, FieldShape>>,
    query: Option<Name>,
    mutation: Option<Name>,
    subscription: Option<Name>,
}

impl CostModel {
    /// Reads the model from a schema's SDL.
    pub fn from_sdl(sdl: &str) -> Result<Self, async_graphql::parser::Error> {
        let document = async_graphql::parser::parse_schema(sdl)?;
        let mut model = Self::default();
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    model.query = schema.query.map(|n| n.node);
                    model.mutation = schema.mutation.map(|n| n.node);
                    model.subscription = schema.subscription.map(|n| n.node);
                }
                TypeSystemDefinition::Type(definition) => {
                    let definition = definition.node;
                    let fields = match definition.kind {
                        TypeKind::Object(object) => object.fields,
                        TypeKind::Interface(interface) => interface.fields,
                        _ => continue,
                    };
                    let shapes = fields
                        .into_iter()
                        .map(|field| {
                            let field = field.node;
                            let paginated = field.arguments.iter().any(|arg| arg.node.name.node == "first");
                            let fan_out = match (paginated, is_list(&field.ty.node)) {
                                (true, _) => FanOut::Page,
                                (false, true) => FanOut::UnpagedList,
                                (false, false) => FanOut::One,
                            };
                            let returns = named_type(&field.ty.node).clone();
                            (field.name.node, FieldShape { returns, fan_out })
                        })
                        .collect();
                    model.types.insert(definition.name.node, shapes);
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        model.mark_connections();
        Ok(model)
    }

    /// The lists of a type that a paginated field returns (a connection)
    /// hold the page that field counted already.
    fn mark_connections(&mut self) {
        let connections: HashSet<Name> = self
            .types
            .values()
            .flat_map(HashMap::values)
            .filter(|shape| shape.fan_out == FanOut::Page)
            .map(|shape| shape.returns.clone())
            .collect();
        for name in connections {
            let Some(fields) = self.types.get_mut(&name) else {
                continue;
            };
            for shape in fields.values_mut() {
                if shape.fan_out == FanOut::UnpagedList {
                    shape.fan_out = FanOut::One;
                }
            }
        }
    }

    /// The cost of the document's most expensive operation (only one of
    /// them runs, and which one is not known before execution).
    pub fn cost(&self, document: &ExecutableDocument, variables: &Variables) -> u64 {
        document
            .operations
            .iter()
            .map(|(_, operation)| {
                let root = match operation.node.ty {
                    OperationType::Query => self.query.as_ref(),
                    OperationType::Mutation => self.mutation.as_ref(),
                    OperationType::Subscription => self.subscription.as_ref(),
                };
                let mut walk = Walk {
                    model: self,
                    document,
                    operation: &operation.node,
                    variables,
                    fragments: HashMap::new(),
                    visiting: HashSet::new(),
                };
                walk.selection_set(&operation.node.selection_set.node, root)
            })
            .max()
            .unwrap_or(0)
    }

    fn field(&self, parent: &Name, field: &str) -> Option<&FieldShape> {
        self.types.get(parent)?.get(field)
    }
}

fn is_list(ty: &Type) -> bool {
    matches!(ty.base, BaseType::List(_))
}

fn named_type(ty: &Type) -> &Name {
    match &ty.base {
        BaseType::Named(name) => name,
        BaseType::List(inner) => named_type(inner),
    }
}

/// Pricing one operation: fragments are priced once each (their type
/// condition fixes what they select on) and reused at every spread.
struct Walk<'a> {
    model: &'a CostModel,
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
    fragments: HashMap<&'a Name, u64>,
    /// Fragments being priced: a cycle (refused by validation) adds nothing.
    visiting: HashSet<&'a Name>,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, parent: Option<&'a Name>) -> u64 {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => self.field(&field.node, parent),
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let on = fragment.type_condition.as_ref().map(|c| &c.node.on.node).or(parent);
                    self.selection_set(&fragment.selection_set.node, on)
                }
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
            })
            .fold(0, u64::saturating_add)
    }

    fn field(&mut self, field: &'a Field, parent: Option<&'a Name>) -> u64 {
        // Fields the SDL does not describe (introspection, or unknown ones
        // that validation refuses) multiply nothing.
        let shape = parent.and_then(|parent| self.model.field(parent, &field.name.node));
        let children = self.selection_set(&field.selection_set.node, shape.map(|s| &s.returns));
        let fan_out = match shape.map(|s| s.fan_out) {
            Some(FanOut::Page) => self.page_size(field),
            Some(FanOut::UnpagedList) => UNPAGED_LIST_FAN_OUT,
            Some(FanOut::One) | None => 1,
        };
        fan_out.saturating_mul(children).saturating_add(1)
    }

    fn fragment(&mut self, name: &'a Name) -> u64 {
        if let Some(cost) = self.fragments.get(name) {
            return *cost;
        }
        let Some((name, fragment)) = self.document.fragments.get_key_value(name) else {
            return 0;
        };
        if !self.visiting.insert(name) {
            return 0;
        }
        let fragment = &fragment.node;
        let cost = self.selection_set(
            &fragment.selection_set.node,
            Some(&fragment.type_condition.node.on.node),
        );
        self.visiting.remove(name);
        self.fragments.insert(name, cost);
        cost
    }

    /// The rows a paginated field returns at most: `first` (literal or
    /// variable), the default page when absent, capped like the resolvers
    /// cap it. A value that is not a number is refused elsewhere; it is
    /// priced as a full page.
    fn page_size(&self, field: &Field) -> u64 {
        // A variable that was not sent and has no default leaves `first` out.
        let first = field.get_argument("first").and_then(|arg| {
            arg.node
                .clone()
                .into_const_with(|name| self.variable(&name).ok_or(()))
                .ok()
        });
        let max = u64::try_from(MAX_PAGE_SIZE).unwrap_or(u64::MAX);
        match first {
            None | Some(Value::Null) => u64::try_from(DEFAULT_PAGE_SIZE).unwrap_or(max),
            Some(Value::Number(n)) => n
                .as_i64()
                .map_or(max, |n| u64::try_from(n.clamp(0, MAX_PAGE_SIZE)).unwrap_or(max)),
            Some(_) => max,
        }
    }

    /// A variable's value as sent, else its default in the operation.
    fn variable(&self, name: &Name) -> Option<Value> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
        type Query { me: User organizations(first: Int, after: String): OrgConnection! plans: [Plan!]! }
        type Mutation { record(inputs: [Int!]!): [Receipt!]! }
        type User { name: String! memberships: [Membership!]! }
        type Membership { role: String! organization: Org! }
        type Org { name: String! members: [Membership!]! events(first: Int): EventConnection! tags: [String!]! }
        type OrgConnection { edges: [OrgEdge!]! nodes: [Org!]! }
        type OrgEdge { cursor: String! node: Org! }
        type EventConnection { nodes: [Event!]! }
        type Event { id: ID! org: Org! }
        type Plan { key: String! }
        type Receipt { id: ID! }
        schema { query: Query mutation: Mutation }
    "#;

    fn cost(query: &str, variables: serde_json::Value) -> u64 {
        let model = CostModel::from_sdl(SDL).unwrap();
        let document = async_graphql::parser::parse_query(query).unwrap();
        model.cost(&document, &Variables::from_json(variables))
    }

    #[test]
    fn a_field_costs_one_and_a_leaf_list_does_not_multiply() {
        assert_eq!(cost("{ me { name } }", serde_json::json!({})), 2);
        // tags is a list of strings: nothing below it to multiply.
        assert_eq!(
            cost(
                "{ me { memberships { organization { tags } } } }",
                serde_json::json!({})
            ),
            1 + 1 + 10 * 2
        );
    }

    #[test]
    fn a_connection_multiplies_once_by_its_capped_page() {
        let q = "{ organizations(first: 100) { edges { node { name } } nodes { name } } }";
        // edges: 1 + node (1 + name 1) = 3; nodes: 1 + name 1 = 2.
        assert_eq!(cost(q, serde_json::json!({})), 1 + 100 * (3 + 2));
        let capped = "{ organizations(first: 5000) { nodes { name } } }";
        assert_eq!(cost(capped, serde_json::json!({})), 1 + 100 * 2);
        let default_page = "{ organizations { nodes { name } } }";
        assert_eq!(cost(default_page, serde_json::json!({})), 1 + 20 * 2);
        let negative = "{ organizations(first: -3) { nodes { name } } }";
        assert_eq!(cost(negative, serde_json::json!({})), 1);
    }

    #[test]
    fn page_sizes_come_from_variables_and_their_defaults() {
        let q = "query ($n: Int) { organizations(first: $n) { nodes { name } } }";
        assert_eq!(cost(q, serde_json::json!({ "n": 7 })), 1 + 7 * 2);
        assert_eq!(cost(q, serde_json::json!({})), 1 + 20 * 2);
        let defaulted = "query ($n: Int = 3) { organizations(first: $n) { nodes { name } } }";
        assert_eq!(cost(defaulted, serde_json::json!({})), 1 + 3 * 2);
        assert_eq!(cost(defaulted, serde_json::json!({ "n": 50 })), 1 + 50 * 2);
    }

    #[test]
    fn nested_pages_multiply_each_other() {
        let q = "{ organizations(first: 100) { nodes { events(first: 100) { nodes {
            org { events(first: 100) { nodes { id } } } } } } } }";
        let inner = 1 + 100 * (1 + 1); // events { nodes { id } }
        let org = 1 + inner;
        let middle = 1 + 100 * (1 + org);
        assert_eq!(cost(q, serde_json::json!({})), 1 + 100 * (1 + middle));
        assert!(cost(q, serde_json::json!({})) > 1_000_000);
    }

    #[test]
    fn unpaged_lists_count_ten_and_fragments_count_at_every_spread() {
        let q = "{ plans { key } a: me { ...M } b: me { ...M } }
            fragment M on User { memberships { role } }";
        let memberships = 1 + 10; // 1 + 10 x role
        assert_eq!(cost(q, serde_json::json!({})), (1 + 10) + 2 * (1 + memberships));
        let inline = "{ me { ... on User { memberships { role } } } }";
        assert_eq!(cost(inline, serde_json::json!({})), 1 + memberships);
    }

    #[test]
    fn introspection_costs_one_per_field() {
        let q = "{ __schema { types { fields { name type { ofType { name } } } } } __typename }";
        assert_eq!(cost(q, serde_json::json!({})), 7 + 1);
    }

    #[test]
    fn fragment_cycles_and_unknown_fragments_add_nothing_and_end() {
        let q = "{ me { ...A } } fragment A on User { name ...B } fragment B on User { ...A ...Missing }";
        assert_eq!(cost(q, serde_json::json!({})), 1 + 1);
    }

    #[test]
    fn a_document_costs_its_most_expensive_operation() {
        let q = "query A { me { name } } query B { plans { key } } mutation C { record(inputs: [1]) { id } }";
        assert_eq!(cost(q, serde_json::json!({})), 11);
    }
}
