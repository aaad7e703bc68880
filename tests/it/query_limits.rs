//! Hostile queries: cost that counts list sizes, and caps on the SQL
//! statements and answer size of one query or subscription event, over
//! HTTP and websockets; and that what the project itself shows people
//! (README, playground, example client) stays within them.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tollgate::{
    config::limits::{DEFAULT_MAX_COMPLEXITY, DEFAULT_MAX_RESPONSE_BYTES},
    graphql::cost_model,
};

use crate::{
    graphql_http::INTROSPECTION_QUERY,
    harness::{
        TestApp, TestAppOptions,
        people::{personal_organization, register},
        ws::{connect_as, receive, receive_within, send},
    },
    usage::{admin_token, set_free_plan},
};

/// `organization { usageEvents(first: $n) { nodes { organization { ... } } } }`
/// nested `levels` deep, ending in `id`: with 100, 100^levels events.
fn nested_usage(levels: usize, first: &str) -> String {
    let mut selection = "id".to_owned();
    for _ in 0..levels {
        selection = format!("organization {{ usageEvents(first: {first}) {{ nodes {{ {selection} }} }} }}");
    }
    // The outermost `organization` takes the id of the caller's own.
    let selection = selection.replacen("organization {", "organization(id: $org) {", 1);
    let variables = if first == "$n" {
        "$org: ID!, $n: Int"
    } else {
        "$org: ID!"
    };
    format!("query ({variables}) {{ {selection} }}")
}

#[tokio::test]
async fn pages_nested_in_pages_are_priced_by_their_sizes_and_refused() {
    let app = TestApp::spawn().await;
    let person = register(&app, "mallory@example.com").await;
    let org = personal_organization(&app, &person.access).await;

    // Four pages of 100 deep: 10^8 events asked for, at depth 13.
    let attack = nested_usage(4, "100");
    let refused = app.graphql_as(&person.access, &attack, json!({ "org": org })).await;
    assert_eq!(refused.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", refused.body);
    assert!(refused.body["data"].is_null(), "{}", refused.body);

    // The page size is read from variables too.
    let by_variable = nested_usage(4, "$n");
    let refused = app
        .graphql_as(&person.access, &by_variable, json!({ "org": org, "n": 100 }))
        .await;
    assert_eq!(refused.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", refused.body);
    let small = app
        .graphql_as(&person.access, &by_variable, json!({ "org": org, "n": 2 }))
        .await;
    assert_eq!(
        small.data()["organization"]["usageEvents"]["nodes"],
        json!([]),
        "{}",
        small.body
    );
}

/// The server keeps parsed documents by their text (`document_cache`): a
/// document sent again must still be priced and guarded for the variables
/// it comes with this time, whatever it came with before.
#[tokio::test]
async fn a_document_sent_again_is_priced_and_guarded_for_its_own_variables() {
    let app = TestApp::spawn().await;
    let person = register(&app, "mallory@example.com").await;
    let org = personal_organization(&app, &person.access).await;

    let by_variable = nested_usage(4, "$n");
    for n in [2, 100, 2, 100] {
        let response = app
            .graphql_as(&person.access, &by_variable, json!({ "org": org, "n": n }))
            .await;
        if n == 100 {
            assert_eq!(response.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", response.body);
        } else {
            let nodes = &response.data()["organization"]["usageEvents"]["nodes"];
            assert_eq!(nodes, &json!([]), "{}", response.body);
        }
    }

    let by_slug = "query ($slug: String!) { organization(slug: $slug) { id } }";
    for slug in ["no-such-organization", "\u{0}", "no-such-organization", "\u{0}"] {
        let response = app.graphql_as(&person.access, by_slug, json!({ "slug": slug })).await;
        if slug.contains('\u{0}') {
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        } else {
            assert!(response.body["errors"].is_null(), "{}", response.body);
            assert!(response.data()["organization"].is_null(), "{}", response.body);
        }
    }
}

#[tokio::test]
async fn an_admins_page_of_organizations_with_their_members_passes() {
    let app = TestApp::spawn().await;
    for n in 0..3 {
        register(&app, &format!("member{n}@example.com")).await;
    }
    let admin = admin_token(&app).await;
    let query = "{ organizations(first: 100) { edges { node { name members { role user { name email } } } } } }";
    let document = async_graphql::parser::parse_query(query).unwrap();
    let cost = cost_model().cost(&document, &Default::default());
    println!("ADMIN organizations page cost: {cost}");

    let response = app.graphql_as(&admin, query, json!({})).await;
    let edges = response.data()["organizations"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 3, "{}", response.body);
    assert_eq!(edges[0]["node"]["members"][0]["role"], "OWNER");
}

#[tokio::test]
async fn the_introspection_answer_fits_four_times_in_the_default_size_cap_but_not_unboundedly() {
    let app = TestApp::spawn().await;
    let document = async_graphql::parser::parse_query(INTROSPECTION_QUERY).unwrap();
    let cost = cost_model().cost(&document, &Default::default());
    let response = app.graphql(INTROSPECTION_QUERY, json!({})).await;
    assert!(response.body["errors"].is_null(), "{}", response.body);
    let size = response.body.to_string().len();
    println!("introspection: cost {cost}, answer {size} bytes");
    assert!(4 * size <= DEFAULT_MAX_RESPONSE_BYTES, "{size} bytes");

    // Introspection is cheap to price but not small: enough copies of it
    // under aliases fit the cost limit and not the size cap.
    let copies = DEFAULT_MAX_RESPONSE_BYTES / size + 1;
    let (operation, fragments) = INTROSPECTION_QUERY.split_once("fragment").unwrap();
    let selection = operation
        .trim()
        .trim_start_matches("query IntrospectionQuery")
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}');
    let aliased: String = (0..copies).map(|i| format!("copy{i}: {selection}\n")).collect();
    let query = format!("{{ {aliased} }}\nfragment{fragments}");
    let aliased_cost = cost_model().cost(
        &async_graphql::parser::parse_query(&query).unwrap(),
        &Default::default(),
    );
    assert!(aliased_cost <= DEFAULT_MAX_COMPLEXITY as u64, "{aliased_cost}");
    let refused = app.graphql(&query, json!({})).await;
    assert_eq!(refused.error_code(), Some("QUERY_TOO_COMPLEX"), "{copies} copies");
    assert!(refused.body["data"].is_null());
}

/// `organization(id: $org) { a0: usageEvents(first: 1) { nodes { id } } ... }`:
/// one statement per alias (events are read per organization).
fn many_reads(aliases: usize) -> String {
    (0..aliases)
        .map(|i| format!("a{i}: usageEvents(first: 1) {{ nodes {{ id }} }} "))
        .collect()
}

/// An app whose queries may run at most 10 statements.
async fn app_with_statement_cap() -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        vars: vec![("GRAPHQL_MAX_STATEMENTS".into(), "10".into())],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_query_over_the_statement_cap_is_refused_but_a_mutations_answer_is_delivered() {
    let app = app_with_statement_cap().await;
    let person = register(&app, "reader@example.com").await;
    let org = personal_organization(&app, &person.access).await;

    let few = format!("query ($org: ID!) {{ organization(id: $org) {{ {} }} }}", many_reads(3));
    let answered = app.graphql_as(&person.access, &few, json!({ "org": org })).await;
    assert_eq!(
        answered.data()["organization"]["a2"]["nodes"],
        json!([]),
        "{}",
        answered.body
    );

    let many = format!(
        "query ($org: ID!) {{ organization(id: $org) {{ {} }} }}",
        many_reads(20)
    );
    let refused = app.graphql_as(&person.access, &many, json!({ "org": org })).await;
    assert_eq!(refused.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", refused.body);
    assert!(refused.body["data"].is_null());

    // The same reads after a change: the change is made, so its answer comes.
    let mutation = format!(
        "mutation ($org: ID!) {{ updateOrganization(id: $org, input: {{ name: \"Renamed\" }}) {{ name {} }} }}",
        many_reads(20)
    );
    let changed = app.graphql_as(&person.access, &mutation, json!({ "org": org })).await;
    assert!(changed.body["errors"].is_null(), "{}", changed.body);
    assert_eq!(changed.data()["updateOrganization"]["name"], "Renamed");
    assert_eq!(changed.data()["updateOrganization"]["a19"]["nodes"], json!([]));
}

#[tokio::test]
async fn websocket_queries_and_each_subscription_event_are_capped_too() {
    let app = app_with_statement_cap().await;
    let person = register(&app, "watcher@example.com").await;
    let org = personal_organization(&app, &person.access).await;
    let mut socket = connect_as(&app, "graphql-transport-ws", &person.access).await;

    let many = format!(
        "query ($org: ID!) {{ organization(id: $org) {{ {} }} }}",
        many_reads(20)
    );
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "q", "payload": { "query": many, "variables": { "org": org } } }),
    )
    .await;
    let message = receive(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["payload"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");

    // Each event re-reads its selection: one that would run 20 statements
    // is refused (and a light one on the same socket still flows).
    let heavy = format!(
        "subscription ($org: ID!) {{ usageUpdated(organizationId: $org) {{ event {{ organization {{ {} }} }} }} }}",
        many_reads(20)
    );
    let light = "subscription ($org: ID!) { usageUpdated(organizationId: $org) { event { totalTokens } } }";
    for (id, query) in [("heavy", heavy.as_str()), ("light", light)] {
        send(
            &mut socket,
            json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": { "org": org } } }),
        )
        .await;
    }
    let record = "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate } }";
    let input =
        json!({ "input": { "organizationId": org, "model": "gpt-4o", "promptTokens": 5, "completionTokens": 1 } });
    let (mut heavy_seen, mut light_seen) = (None, None);
    for _ in 0..40 {
        let recorded = app.graphql_as(&person.access, record, input.clone()).await;
        assert_eq!(recorded.data()["recordUsage"]["duplicate"], false);
        while let Some(message) = receive_within(&mut socket, std::time::Duration::from_millis(250)).await {
            match message["id"].as_str() {
                Some("heavy") if heavy_seen.is_none() => heavy_seen = Some(message),
                Some("light") if light_seen.is_none() => light_seen = Some(message),
                _ => {}
            }
        }
        if heavy_seen.is_some() && light_seen.is_some() {
            break;
        }
    }
    let heavy = heavy_seen.expect("the heavy subscription heard of the event");
    assert_eq!(heavy["type"], "error", "{heavy}");
    assert_eq!(heavy["payload"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
    let light = light_seen.expect("the light subscription heard of the event");
    assert_eq!(light["type"], "next", "{light}");
    assert_eq!(light["payload"]["data"]["usageUpdated"]["event"]["totalTokens"], 6);
}

#[tokio::test]
async fn a_batch_of_a_thousand_inputs_passes_the_limits() {
    let app = TestApp::spawn().await;
    // No quota in the way: this is about the query limits.
    set_free_plan(&app, None, None, None).await;
    let person = register(&app, "batcher@example.com").await;
    let org = personal_organization(&app, &person.access).await;
    let query = "mutation ($inputs: [RecordUsageInput!]!) { recordUsageBatch(inputs: $inputs) {
        duplicate event { id requestId totalTokens costMicroUsd priced user { id } } quota { tokensUsed requestsToday } } }";
    let inputs: Vec<Value> = (0..1000)
        .map(|i| json!({ "organizationId": org, "model": "gpt-4o", "promptTokens": 1, "completionTokens": 1, "requestId": format!("r{i}") }))
        .collect();
    let variables = json!({ "inputs": inputs });
    let document = async_graphql::parser::parse_query(query).unwrap();
    let cost = cost_model().cost(&document, &async_graphql::Variables::from_json(variables.clone()));
    println!("recordUsageBatch of 1,000 cost: {cost}");
    let response = app.graphql_as(&person.access, query, variables).await;
    assert!(response.body["errors"].is_null(), "{}", response.body);
    assert_eq!(response.data()["recordUsageBatch"].as_array().unwrap().len(), 1000);
}

/// Every GraphQL document the project shows people, found where it shows
/// them, so a new example is checked without anyone listing it here.
#[test]
fn every_document_in_the_readme_playground_and_examples_is_within_the_default_cost() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = cost_model();
    for (place, sources) in [
        ("README", vec![root.join("README.md")]),
        ("playground", files_in(&root.join("playground/src"))),
        ("examples", files_in(&root.join("examples/src"))),
    ] {
        let mut found = 0;
        for source in &sources {
            let text = std::fs::read_to_string(source).unwrap();
            let markdown = source.extension().is_some_and(|ext| ext == "md");
            for document in graphql_documents(&text, markdown) {
                let parsed = async_graphql::parser::parse_query(&document)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{document}", source.display()));
                let cost = model.cost(&parsed, &Default::default());
                println!("{cost:>6}  {}: {}", source.display(), one_line(&document));
                assert!(
                    cost <= DEFAULT_MAX_COMPLEXITY as u64,
                    "{}: cost {cost}\n{document}",
                    source.display()
                );
                found += 1;
            }
        }
        // Each place shows several; none found means the extraction broke.
        assert!(found > 0, "no document found in the {place}");
    }
}

/// The TypeScript sources of a directory.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ts" || ext == "tsx"))
        .collect();
    files.sort();
    files
}

fn one_line(document: &str) -> String {
    let line = document.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(100).collect()
}

/// The GraphQL documents in a source text: fenced `graphql` blocks,
/// string literals (JSON, TypeScript, template literals) and, in Markdown
/// prose, inline code. A candidate is one that starts like a document;
/// selections shown inline (`me { sessions { id } }`) count when they
/// parse as a query.
fn graphql_documents(text: &str, markdown: bool) -> Vec<String> {
    let mut documents = Vec::new();
    let code_blocks: Vec<(String, String)> = if markdown {
        fenced_blocks(text)
    } else {
        vec![(String::new(), text.to_owned())]
    };
    for (language, block) in &code_blocks {
        if language == "graphql" {
            documents.push(block.clone());
        } else {
            documents.extend(documents_in_code(block));
        }
    }
    if markdown {
        for span in inline_code(&prose(text)) {
            if starts_like_a_document(&span) {
                documents.push(span);
            } else if span.contains("{ ") {
                // Spaced like a selection, unlike `metric{label,label}`.
                let wrapped = format!("{{ {span} }}");
                if async_graphql::parser::parse_query(&wrapped).is_ok() {
                    documents.push(wrapped);
                }
            }
        }
    }
    documents
}

/// Whether text, past `#` comment lines, opens an operation or a fragment
/// with a selection set (unlike a log line "subscription error"), or a
/// selection set (`{` then a field name, unlike a JSON object).
fn starts_like_a_document(text: &str) -> bool {
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty() || line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(rest) = body.strip_prefix('{') {
        return rest
            .trim_start()
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    }
    body.contains('{')
        && ["query", "mutation", "subscription", "fragment"].iter().any(|keyword| {
            body.strip_prefix(keyword)
                .is_some_and(|rest| rest.starts_with(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        })
}

/// The fenced code blocks of a Markdown text: (language, content).
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(language)) => open = Some((language.trim().to_owned(), Vec::new())),
            (Some(_), Some(_)) => {
                if let Some((language, lines)) = open.take() {
                    blocks.push((language, lines.join("\n")));
                }
            }
            (Some((_, lines)), None) => lines.push(line),
            (None, None) => {}
        }
    }
    blocks
}

/// A Markdown text without its fenced blocks.
fn prose(text: &str) -> String {
    let mut inside = false;
    let mut kept = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if !inside {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// Single-backtick spans of Markdown prose (a span may wrap lines within
/// its paragraph).
fn inline_code(prose: &str) -> Vec<String> {
    prose
        .split("\n\n")
        .flat_map(|paragraph| {
            let paragraph = paragraph.lines().collect::<Vec<_>>().join(" ");
            paragraph
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The documents in the string literals of code: `"..."` and `'...'` end
/// at their line (an unterminated one, like a shell string spanning lines,
/// is skipped and its contents searched), template literals may span
/// lines, and a literal that is not a document is searched in turn (a
/// JSON body inside a shell string).
fn documents_in_code(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut documents = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let quote = chars[i];
        if !matches!(quote, '"' | '\'' | '`') {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let mut raw = String::new();
        let mut closed = false;
        while j < chars.len() {
            match chars[j] {
                '\\' if j + 1 < chars.len() => {
                    raw.push(chars[j]);
                    raw.push(chars[j + 1]);
                    j += 2;
                    continue;
                }
                '\n' if quote != '`' => break,
                c if c == quote => {
                    closed = true;
                    break;
                }
                c => raw.push(c),
            }
            j += 1;
        }
        if !closed {
            i += 1;
            continue;
        }
        let decoded = unescape(&raw);
        if starts_like_a_document(&decoded) {
            documents.push(decoded);
        } else {
            documents.extend(documents_in_code(&raw));
        }
        i = j + 1;
    }
    documents
}

/// JSON-style escapes (`\"`, `\\`, `\n`, `\'`, `` \` ``).
fn unescape(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
