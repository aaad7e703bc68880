//! The GraphiQL playground at `/playground`: the bundle built from
//! `playground/` (committed under `playground/dist`), embedded in the binary
//! and served under a strict Content-Security-Policy. Nothing is loaded
//! from anywhere but this server.

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use include_dir::{Dir, include_dir};

use tollgate_schema::HttpState;

/// `playground/dist`, as `npm run build` in `playground/` leaves it.
static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/playground/dist");

/// Where the playground lives; the bundle is built with this base path.
pub const PATH: &str = "/playground";

/// Hashed file names change with their contents, so they never go stale.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The playground's routes, and `/` sending people to it.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary(PATH) }))
        .route(PATH, get(index))
        .route("/playground/", get(index))
        .route("/playground/{*file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    // include_dir paths are relative and never contain `..`, so a request
    // can only name a file of the bundle.
    let Some(file) = DIST.get_file(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        "no-cache"
    };
    let mut response = file.contents().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(request)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// Scripts and workers from this origin only, and nothing evaluated from a
/// string; connections to this origin only, websockets included (named
/// explicitly for browsers whose `'self'` does not cover ws: and wss:).
/// Styles allow inline because the Monaco editor writes `<style>` elements
/// at run time, and fonts and images allow `data:` because GraphiQL's
/// published stylesheet embeds its fonts and icons that way; neither can
/// run code.
pub fn content_security_policy(request: &HeaderMap) -> String {
    let websockets = request
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| is_plain_authority(host))
        .map(|host| format!(" ws://{host} wss://{host}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'{websockets}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// A host and optional port, and nothing that could end a directive.
fn is_plain_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ttf" => "font/ttf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded() {
        let index = DIST.get_file("index.html").expect("playground/dist/index.html");
        let html = std::str::from_utf8(index.contents()).expect("utf-8");
        assert!(html.contains("/playground/assets/"), "built with base /playground/");
        assert!(!html.contains("<script>"), "no inline script");
    }

    #[test]
    fn websockets_are_allowed_to_the_requested_host_only() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.example.com:8443"));
        let policy = content_security_policy(&headers);
        assert!(policy.contains("connect-src 'self' ws://api.example.com:8443 wss://api.example.com:8443;"));
        headers.insert(header::HOST, HeaderValue::from_static("evil.test; script-src *"));
        let policy = content_security_policy(&headers);
        assert!(policy.contains("connect-src 'self';"), "{policy}");
        assert!(!policy.contains("evil"));
    }
}
