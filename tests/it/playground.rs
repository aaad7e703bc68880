//! `/playground`: the embedded GraphiQL bundle, its headers, and the switch.

use reqwest::{StatusCode, redirect::Policy};

use crate::harness::{TestApp, TestAppOptions};

/// Asset paths (`/playground/assets/...`) quoted in `text`.
fn asset_paths(text: &str) -> Vec<String> {
    text.match_indices("/playground/assets/")
        .map(|(start, _)| {
            let rest = &text[start..];
            let end = rest.find(['"', '\'', '`', ')', ' ']).unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

#[tokio::test]
async fn the_playground_page_is_served_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let response = app.http().get(app.url("/playground")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let policy = headers["content-security-policy"].to_str().unwrap().to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "worker-src 'self';",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    let host = app.addr.to_string();
    assert!(
        policy.contains(&format!("connect-src 'self' ws://{host} wss://{host};")),
        "websockets to this server only: {policy}"
    );
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    assert!(
        !policy.contains("http:") && !policy.contains("https:"),
        "no other origins: {policy}"
    );

    let html = response.text().await.unwrap();
    assert!(html.contains("<div id=\"root\">"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("<script type=\"module\">"),
        "no inline script: {html}"
    );
    assert!(
        !html.contains("//cdn") && !html.contains("https://"),
        "nothing from elsewhere: {html}"
    );
    // The trailing-slash form shows the same page.
    let slash = app.http().get(app.url("/playground/")).send().await.unwrap();
    assert_eq!(slash.text().await.unwrap(), html);
}

#[tokio::test]
async fn every_script_style_and_worker_of_the_bundle_is_served() {
    let app = TestApp::spawn().await;
    let html = app
        .http()
        .get(app.url("/playground"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut pending = asset_paths(&html);
    assert!(pending.iter().any(|p| p.ends_with(".js")), "a script: {html}");
    assert!(pending.iter().any(|p| p.ends_with(".css")), "a stylesheet: {html}");
    // Follow references from scripts too, which is how the Monaco workers
    // and lazily loaded chunks are found.
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let response = app.http().get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("ttf") => "font/ttf",
            _ => continue,
        };
        assert_eq!(response.headers()["content-type"], expected, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{path}"
        );
        if path.ends_with(".js") {
            pending.extend(asset_paths(&response.text().await.unwrap()));
        }
    }
    for worker in ["editor.worker", "graphql.worker", "json.worker"] {
        assert!(
            seen.iter().any(|path| path.contains(worker)),
            "{worker} is a file of the bundle: {seen:?}"
        );
    }
}

#[tokio::test]
async fn the_root_redirects_to_the_playground_and_unknown_files_are_not_found() {
    let app = TestApp::spawn().await;
    let client = no_redirects();
    let root = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(root.headers()["location"], "/playground");

    for path in [
        "/playground/assets/missing.js",
        "/playground/%2e%2e/Cargo.toml",
        "/playground/..%2fCargo.toml",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_playground_can_be_turned_off_and_is_off_in_production() {
    for vars in [
        vec![("PLAYGROUND".to_owned(), "false".to_owned())],
        vec![("APP_ENV".to_owned(), "production".to_owned())],
    ] {
        let app = TestApp::spawn_with(TestAppOptions {
            vars: vars.clone(),
            ..Default::default()
        })
        .await;
        let client = no_redirects();
        for path in ["/playground", "/"] {
            let response = client.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path} with {vars:?}");
        }
        // The API itself is unaffected.
        let health = client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
}
