//! The workspace's layers point one way, checked from the outside:
//!
//! - every crate of the workspace has a place in [`LAYERS`] and depends
//!   only on crates below it;
//! - only the GraphQL layer and the server depend on async-graphql;
//! - inside each crate, no two top-level modules import each other, even
//!   through others (a cycle among `use crate::...` paths).
//!
//! Cargo refuses cycles between crates on its own; this adds the direction
//! (a domain may not start depending on the server) and the rule inside a
//! crate that Cargo cannot see.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace's crates, lowest layer first. A crate may depend only on
/// crates listed before it.
const LAYERS: &[&str] = &[
    "tollgate-core",
    "tollgate-db",
    "tollgate-platform",
    "tollgate-auth",
    "tollgate-services",
    "tollgate-gateway",
    "tollgate-schema",
    "tollgate",
];

/// The crates that may depend on async-graphql: the GraphQL layer and the
/// server that serves it.
const GRAPHQL_CRATES: &[&str] = &["tollgate-schema", "tollgate"];

struct Member {
    name: String,
    src: PathBuf,
    /// Workspace crates it depends on (normal and build dependencies).
    internal: Vec<String>,
    /// Every dependency name of its `[dependencies]`.
    external: Vec<String>,
}

fn members() -> Vec<Member> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    packages
        .iter()
        .map(|package| {
            let manifest = Path::new(package["manifest_path"].as_str().expect("manifest_path"));
            let dependencies: Vec<(&str, bool)> = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| (d["name"].as_str().expect("name"), d["kind"].as_str() == Some("dev")))
                .collect();
            Member {
                name: package["name"].as_str().expect("name").to_owned(),
                src: manifest.parent().expect("a folder").join("src"),
                internal: dependencies
                    .iter()
                    .filter(|(name, dev)| !dev && names.contains(*name))
                    .map(|(name, _)| (*name).to_owned())
                    .collect(),
                external: dependencies
                    .iter()
                    .filter(|(_, dev)| !dev)
                    .map(|(name, _)| (*name).to_owned())
                    .collect(),
            }
        })
        .collect()
}

fn layer_of(name: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| *layer == name)
        .unwrap_or_else(|| panic!("crate {name} has no place in LAYERS (tests/it/layers.rs): add it where it belongs"))
}

#[test]
fn every_crate_depends_only_on_layers_below_it() {
    let members = members();
    assert!(members.len() >= 4, "the workspace has {} crates", members.len());
    let mut upward = Vec::new();
    for member in &members {
        let own = layer_of(&member.name);
        for dependency in &member.internal {
            if layer_of(dependency) >= own {
                upward.push(format!("{} -> {dependency}", member.name));
            }
        }
    }
    assert!(upward.is_empty(), "dependencies that point up or sideways: {upward:?}");
}

#[test]
fn only_the_graphql_layer_and_the_server_know_graphql() {
    let offenders: Vec<String> = members()
        .into_iter()
        .filter(|m| !GRAPHQL_CRATES.contains(&m.name.as_str()))
        .filter(|m| m.external.iter().any(|d| d.starts_with("async-graphql")))
        .map(|m| m.name)
        .collect();
    assert!(
        offenders.is_empty(),
        "crates below the GraphQL layer that depend on async-graphql: {offenders:?}"
    );
}

#[test]
fn no_two_top_level_modules_of_a_crate_import_each_other() {
    let mut found = Vec::new();
    for member in members() {
        let cycles = module_cycles(&member.src);
        if !cycles.is_empty() {
            found.push(format!("{}: {cycles:?}", member.name));
        }
    }
    assert!(found.is_empty(), "top-level modules in import cycles: {found:?}");
}

#[test]
fn the_cycle_scan_sees_imports_in_every_form() {
    let source =
        "use crate::{a::X, b::{self, Y}};\nfn f() { crate::c::go(); }\n// crate::d is a comment\nuse super::e;";
    assert_eq!(
        referenced_modules(source),
        ["a", "b", "c"].into_iter().map(str::to_owned).collect::<BTreeSet<_>>()
    );
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        cycles(&graph),
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
}

/// The strongly connected groups (two or more modules) of a crate's
/// `use crate::...` graph, each sorted.
fn module_cycles(src: &Path) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("inside src");
        let mut parts = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let first = parts.next().expect("a file name");
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("a readable source file");
        let targets = graph.entry(module.clone()).or_default();
        targets.extend(
            referenced_modules(&source)
                .into_iter()
                .filter(|target| *target != module),
        );
    }
    cycles(&graph)
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules a source file names through `crate::`, in `use`
/// trees (`use crate::{a, b::c}`) and in paths (`crate::a::f()`).
fn referenced_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..closing_brace(group)];
            found.extend(top_level_items(inner).into_iter().map(|item| first_segment(&item)));
        } else {
            found.insert(first_segment(rest));
        }
    }
    found.retain(|name| !name.is_empty() && name != "self" && name != "super");
    found
}

/// Where the `}` closing an already opened `{` is.
fn closing_brace(text: &str) -> usize {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The comma-separated items of a use group, nested groups kept whole.
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
}

fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Tarjan's strongly connected components, keeping those of two or more.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.graph.contains_key(next) {
                    continue;
                }
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found.sort();
    walk.found
}
