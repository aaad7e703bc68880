//! The exported SDL against the committed `schema.graphql` (drift) and
//! against the API contract in `shared/spec/schema.graphql` (coverage).
//!
//! Contract items not built yet are listed in `tests/contract_gaps.txt`,
//! which later issues shrink to empty. An item that is built but still
//! listed fails too, so the list never lies.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use async_graphql::parser::{
    parse_schema,
    types::{InputValueDefinition, TypeKind, TypeSystemDefinition},
};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root: the nearest folder up from this package that holds
/// a `Cargo.toml` with a `[workspace]` table, so the contract is found the
/// same way wherever the package sits in the workspace.
fn workspace_root() -> PathBuf {
    manifest_dir()
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| manifest.contains("[workspace]"))
        })
        .expect("a Cargo workspace above the package")
        .to_path_buf()
}

#[test]
fn committed_schema_matches_the_code() {
    let path = manifest_dir().join("schema.graphql");
    let exported = tollgate::graphql::export_sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &exported).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == exported,
        "schema.graphql is out of date: run `cargo run -- export-schema --out schema.graphql` \
         (or UPDATE_SCHEMA=1 cargo test committed_schema) and commit it"
    );
}

/// Every item of an SDL: `Type` -> kind, `Type.field` -> type,
/// `Type.field(arg)` -> type and default, `Enum.VALUE`, `Union|Member`.
fn items(sdl: &str) -> BTreeMap<String, String> {
    let document = parse_schema(sdl).expect("the SDL parses");
    let mut items = BTreeMap::new();
    let input = |ty: &InputValueDefinition| match &ty.default_value {
        Some(default) => format!("{} = {}", ty.ty.node, default.node),
        None => ty.ty.node.to_string(),
    };
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let definition = definition.node;
        let name = definition.name.node.to_string();
        let kind = match &definition.kind {
            TypeKind::Scalar => "scalar",
            TypeKind::Object(_) => "type",
            TypeKind::Interface(_) => "interface",
            TypeKind::Union(_) => "union",
            TypeKind::Enum(_) => "enum",
            TypeKind::InputObject(_) => "input",
        };
        items.insert(name.clone(), kind.to_owned());
        match definition.kind {
            TypeKind::Object(object) => {
                for field in object.fields {
                    let field = field.node;
                    let key = format!("{name}.{}", field.name.node);
                    for argument in &field.arguments {
                        items.insert(format!("{key}({})", argument.node.name.node), input(&argument.node));
                    }
                    items.insert(key, field.ty.node.to_string());
                }
            }
            TypeKind::Interface(interface) => {
                for field in interface.fields {
                    items.insert(
                        format!("{name}.{}", field.node.name.node),
                        field.node.ty.node.to_string(),
                    );
                }
            }
            TypeKind::InputObject(object) => {
                for field in object.fields {
                    items.insert(format!("{name}.{}", field.node.name.node), input(&field.node));
                }
            }
            TypeKind::Enum(enumeration) => {
                for value in enumeration.values {
                    items.insert(format!("{name}.{}", value.node.value.node), "value".to_owned());
                }
            }
            TypeKind::Union(union) => {
                for member in union.members {
                    items.insert(format!("{name}|{}", member.node), "member".to_owned());
                }
            }
            TypeKind::Scalar => {}
        }
    }
    items
}

/// `Type.field(arg)` -> [`Type.field`, `Type`]: a listed ancestor covers it.
fn ancestors(key: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((field, _)) = key.split_once('(') {
        found.push(field.to_owned());
    }
    if let Some((ty, _)) = key.split_once(['.', '|']) {
        found.push(ty.to_owned());
    }
    found
}

fn gap_list() -> (PathBuf, BTreeSet<String>) {
    let path = manifest_dir().join("tests/contract_gaps.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let gaps = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    (path, gaps)
}

#[test]
fn every_contract_item_is_built_or_listed_as_a_gap() {
    let contract_path = workspace_root().join("../shared/spec/schema.graphql");
    // A missing contract fails rather than skips: a check that passes
    // without checking anything would hide every drift.
    let contract = std::fs::read_to_string(&contract_path).unwrap_or_else(|e| {
        panic!(
            "the API contract {} cannot be read ({e}); the repository expects the shared specification next to it",
            contract_path.display()
        )
    });
    let contract = items(&contract);
    let exported = items(&tollgate::graphql::export_sdl());
    let (gaps_path, gaps) = gap_list();

    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (key, expected) in &contract {
        let listed = gaps.contains(key) || ancestors(key).iter().any(|a| gaps.contains(a));
        match exported.get(key) {
            Some(actual) if actual != expected => {
                problems.push(format!(
                    "{key}: the contract says `{expected}`, the server has `{actual}`"
                ));
            }
            Some(_) if gaps.contains(key) => problems.push(format!("{key} is built but still listed as a gap")),
            Some(_) => {}
            None if listed => {}
            None => missing.push(key.clone()),
        }
    }
    for gap in &gaps {
        if !contract.contains_key(gap) {
            problems.push(format!("{gap} is listed as a gap but is not in the contract"));
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "not built and not listed in {}:\n{}",
            gaps_path.display(),
            missing.join("\n")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_item_walker_sees_types_fields_arguments_and_defaults() {
    let found = items(
        "type Query { a(x: Int! = 3, y: [String!]): [Int]! }\nenum E { A B }\ninput I { f: E! = A }\nunion U = Query",
    );
    assert_eq!(found["Query.a(x)"], "Int! = 3");
    assert_eq!(found["Query.a(y)"], "[String!]");
    assert_eq!(found["Query.a"], "[Int]!");
    assert_eq!(found["E.B"], "value");
    assert_eq!(found["I.f"], "E! = A");
    assert_eq!(found["U|Query"], "member");
    assert_eq!(ancestors("Query.a(x)"), ["Query.a", "Query"]);
}
