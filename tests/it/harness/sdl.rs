//! A schema's types read from SDL, for tests that walk the whole schema
//! (the contract's, or the one the code exports).

use std::collections::BTreeMap;

use async_graphql::parser::{
    parse_schema,
    types::{BaseType, FieldDefinition, InputValueDefinition, Type, TypeKind, TypeSystemDefinition},
};

/// The types of an SDL document by name.
pub struct SdlTypes {
    /// Every type definition.
    pub types: BTreeMap<String, TypeKind>,
}

impl SdlTypes {
    /// Reads `sdl`; panics when it does not parse.
    pub fn parse(sdl: &str) -> Self {
        let document = parse_schema(sdl).expect("the SDL parses");
        let types = document
            .definitions
            .into_iter()
            .filter_map(|definition| match definition {
                TypeSystemDefinition::Type(ty) => Some((ty.node.name.node.to_string(), ty.node.kind)),
                _ => None,
            })
            .collect();
        Self { types }
    }

    /// The fields of an object type; none for other types.
    pub fn fields(&self, type_name: &str) -> Vec<&FieldDefinition> {
        match self.types.get(type_name) {
            Some(TypeKind::Object(object)) => object.fields.iter().map(|f| &f.node).collect(),
            _ => Vec::new(),
        }
    }

    /// The fields of an input object type; None for other types.
    pub fn input_fields(&self, type_name: &str) -> Option<Vec<&InputValueDefinition>> {
        match self.types.get(type_name) {
            Some(TypeKind::InputObject(object)) => Some(object.fields.iter().map(|f| &f.node).collect()),
            _ => None,
        }
    }
}

/// The named type inside any list and non-null wrappers.
pub fn base_name(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => base_name(inner),
    }
}
