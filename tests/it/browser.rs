//! The playground in a real browser: Debian's headless Chromium, driven over
//! the DevTools protocol, runs a query and a subscription through the page
//! and the test reads the results off the page.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    sync::{Mutex as AsyncMutex, oneshot},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::harness::{TestApp, people};

/// Everything waits this long at most: a debug server and a browser share
/// two busy cores with the other tests.
const PATIENCE: Duration = Duration::from_secs(120);

const CHROMIUM_PATHS: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];

const WATCH_USAGE: &str = "subscription WatchUsage($organizationId: ID!) {
  usageUpdated(organizationId: $organizationId) {
    event { model promptTokens completionTokens requestId }
    quota { tokensUsed }
  }
}";

const RECORD_USAGE: &str = "mutation ($input: RecordUsageInput!) { recordUsage(input: $input) { duplicate } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_a_query_and_a_subscription_in_chromium() {
    let Some(chromium) = chromium().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let ada = people::register(&app, "browser@example.test").await;
    let me = app
        .graphql_as(&ada.access, "{ me { memberships { organization { id } } } }", json!({}))
        .await;
    let organization_id = me.data()["me"]["memberships"][0]["organization"]["id"]
        .as_str()
        .expect("a personal organization")
        .to_owned();

    let browser = Browser::launch(&chromium).await;
    let page = browser.open(&app.url("/playground")).await;
    page.wait_for(
        "the example tabs",
        "document.querySelectorAll('.graphiql-tab').length >= 5 && !!document.querySelector('#tg-token')",
    )
    .await;
    // The editors load after the tabs; a person waits for them too.
    page.wait_for(
        "the first example in the editor",
        &format!("{QUERY_TEXT}.includes('mutation SignUp(')"),
    )
    .await;

    // A query through the example tab, with the token typed into the box.
    page.type_into("#tg-token", &ada.access).await;
    page.wait_for(
        "the box to recognise an access token",
        "document.querySelector('#tg-token-kind').textContent.startsWith('access token, expires')",
    )
    .await;
    page.click_tab("Me").await;
    page.wait_for(
        "the Me operation in the editor",
        &format!("{QUERY_TEXT}.includes('query Me {{')"),
    )
    .await;
    page.click(".graphiql-execute-button").await;
    let shown = page
        .wait_for(
            "the signed-in user in the response",
            &response_containing("browser@example.test"),
        )
        .await;
    assert!(shown.as_str().unwrap_or_default().contains(&organization_id), "{shown}");

    // A subscription opened from a shared link; the token is remembered.
    let variables = json!({ "organizationId": organization_id }).to_string();
    let link = format!(
        "{}?query={}&variables={}",
        app.url("/playground"),
        percent(WATCH_USAGE),
        percent(&variables)
    );
    page.navigate(&link).await;
    page.wait_for(
        "the shared subscription in the editor",
        &format!("{QUERY_TEXT}.includes('subscription WatchUsage')"),
    )
    .await;
    let token = page.eval("document.querySelector('#tg-token').value").await;
    assert_eq!(token, json!(ada.access), "the token survives a reload");
    page.click(".graphiql-execute-button").await;

    // The subscription may take a moment to reach the server; report until
    // the page shows an event (each report is a distinct call).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut attempt = 0;
    let shown = loop {
        attempt += 1;
        let input = json!({ "input": {
            "organizationId": organization_id, "model": "gpt-4o-mini",
            "promptTokens": 4321, "completionTokens": 87, "requestId": format!("browser-{attempt}"),
        }});
        let recorded = app.graphql_as(&ada.access, RECORD_USAGE, input).await;
        assert_eq!(
            recorded.data()["recordUsage"]["duplicate"],
            false,
            "{:?}",
            recorded.body
        );
        let probe = page.eval(&response_containing("4321")).await;
        if probe.is_string() {
            break probe;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "no usage event reached the page; it shows: {}",
                page.eval(RESPONSE_TEXT).await
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let shown = shown.as_str().unwrap_or_default();
    assert!(shown.contains("gpt-4o-mini"), "{shown}");
    assert!(shown.contains("\"completionTokens\": 87"), "{shown}");

    let violations = page.eval("JSON.stringify(window.__cspViolations)").await;
    assert_eq!(
        violations,
        json!("[]"),
        "the page works within its Content-Security-Policy"
    );
    browser.close().await;
}

/// A person with TOTP on approves an editor's device login on the built-in
/// `/device` page: password, then a wrong code (the page says so and asks
/// again), then the right one, then the approval the editor's poll sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_page_asks_a_totp_user_for_their_code_then_approves() {
    let Some(chromium) = chromium().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let ada = people::register(&app, "device-mfa@example.test").await;
    let (secret, _) = crate::mfa::enable_totp(&app, &ada).await;
    let started = app
        .graphql(
            "mutation { startDeviceLogin(clientName: \"VS Code\") { deviceCode userCode } }",
            json!({}),
        )
        .await;
    let started = started.data()["startDeviceLogin"].clone();
    let user_code = started["userCode"].as_str().expect("a user code");

    let browser = Browser::launch(&chromium).await;
    let page = browser
        .open(&app.url(&format!("/device?code={}", percent(user_code))))
        .await;
    page.type_into("#signin input[name=email]", "device-mfa@example.test")
        .await;
    page.type_into("#signin input[name=password]", people::PASSWORD).await;
    page.click("#signin button[type=submit]").await;
    page.wait_for("the two-factor form", "!document.querySelector('#mfa-form').hidden")
        .await;

    let right = crate::mfa::current_code(&app, &secret);
    let wrong: String = right
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { if c == '1' { '2' } else { '1' } } else { c })
        .collect();
    page.type_into("#mfa-form input[name=mfa]", &wrong).await;
    page.click("#mfa-form button[type=submit]").await;
    let said = page
        .wait_for(
            "the wrong code to be refused",
            "document.querySelector('#status.error')?.textContent",
        )
        .await;
    assert!(said.as_str().unwrap_or_default().contains("not correct"), "{said}");
    assert_eq!(
        page.eval("document.querySelector('#mfa-form').hidden").await,
        json!(false)
    );

    page.eval("document.querySelector('#mfa-form input[name=mfa]').value = ''")
        .await;
    page.type_into("#mfa-form input[name=mfa]", &right).await;
    page.click("#mfa-form button[type=submit]").await;
    page.wait_for(
        "the device request to confirm",
        "!document.querySelector('#confirm').hidden && document.querySelector('#client-name').textContent",
    )
    .await;
    page.click("#approve").await;
    page.wait_for("the approval", "!document.querySelector('#done').hidden")
        .await;

    let polled = app
        .graphql(
            "mutation ($c: String!) { pollDeviceLogin(deviceCode: $c) { accessToken user { email } } }",
            json!({ "c": started["deviceCode"] }),
        )
        .await;
    assert_eq!(
        polled.data()["pollDeviceLogin"]["user"]["email"],
        "device-mfa@example.test",
        "{:?}",
        polled.body
    );
    browser.close().await;
}

/// The response pane's text (Monaco writes spaces as no-break spaces).
const RESPONSE_TEXT: &str =
    "(document.querySelector('.graphiql-response .view-lines')?.innerText ?? '').replace(/\\u00a0/g, ' ')";
/// The operation editor's text.
const QUERY_TEXT: &str =
    "(document.querySelector('.graphiql-query-editor .view-lines')?.innerText ?? '').replace(/\\u00a0/g, ' ')";

/// An expression: the response pane's text once it contains `needle`.
fn response_containing(needle: &str) -> String {
    format!("(() => {{ const text = {RESPONSE_TEXT}; return text.includes({needle:?}) ? text : null; }})()")
}

fn percent(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Debian's Chromium, installed by `scripts/install-deps.sh --browser` when
/// missing. None (with the reason printed) only when that fails.
async fn chromium() -> Option<PathBuf> {
    if let Some(found) = find_chromium() {
        return Some(found);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh");
    eprintln!(
        "browser test: Chromium not found; running {} --browser",
        script.display()
    );
    let installed = Command::new(&script).arg("--browser").status().await;
    if let Some(found) = find_chromium() {
        return Some(found);
    }
    eprintln!(
        "browser test SKIPPED: Chromium is not installed and could not be installed ({installed:?}); \
         install Debian's `chromium` package to run it"
    );
    None
}

fn find_chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(CHROMIUM_PATHS.iter().map(PathBuf::from))
        .find(|path| path.is_file())
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A headless Chromium with its own profile, and a DevTools connection.
struct Browser {
    child: Child,
    devtools: Arc<DevTools>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(path: &Path) -> Self {
        let profile = tempfile::tempdir().expect("a profile folder");
        // The flags keep Chromium off the network (this machine has none)
        // and out of the sandbox, which needs privileges tests lack.
        let mut child = Command::new(path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting Chromium");
        let stderr = child.stderr.take().expect("Chromium's stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("reading Chromium's output") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("Chromium exited before opening DevTools");
        })
        .await
        .expect("Chromium to open DevTools");
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let devtools = DevTools::connect(&endpoint).await;
        Self {
            child,
            devtools,
            _profile: profile,
        }
    }

    /// A new tab showing `url`, recording Content-Security-Policy violations
    /// in `window.__cspViolations`.
    async fn open(&self, url: &str) -> Page {
        let target = self
            .devtools
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .devtools
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        let page = Page {
            devtools: self.devtools.clone(),
            session: attached["sessionId"].as_str().expect("a session id").to_owned(),
        };
        page.command("Page.enable", json!({})).await;
        page.command(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.__cspViolations = [];
                document.addEventListener('securitypolicyviolation', (e) =>
                  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));" }),
        )
        .await;
        page.navigate(url).await;
        page
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.devtools.call(None, "Browser.close", json!({})),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// One tab.
struct Page {
    devtools: Arc<DevTools>,
    session: String,
}

impl Page {
    async fn command(&self, method: &str, params: Value) -> Value {
        self.devtools.call(Some(&self.session), method, params).await
    }

    async fn navigate(&self, url: &str) {
        let navigated = self.command("Page.navigate", json!({ "url": url })).await;
        assert!(navigated.get("errorText").is_none(), "loading {url}: {navigated}");
        self.wait_for("the page to load", "document.readyState === 'complete'")
            .await;
    }

    /// The value of a JavaScript expression (promises awaited).
    async fn eval(&self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression}: {exception}");
        }
        result["result"].get("value").cloned().unwrap_or(Value::Null)
    }

    /// Polls `expression` until it is truthy and returns its value.
    async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(text) => !text.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                let body = self.eval("document.body?.innerText ?? ''").await;
                panic!("waited {PATIENCE:?} for {what}; the page shows: {body}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Clicks the element `selector` finds, as a person would: a mouse
    /// press and release at its centre.
    async fn click(&self, selector: &str) {
        let expression = format!(
            "(() => {{ const r = document.querySelector({selector:?})?.getBoundingClientRect();
                return r && r.width > 0 ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()"
        );
        let centre = self.wait_for(&format!("{selector} to be visible"), &expression).await;
        self.click_at(&centre).await;
    }

    /// Clicks the GraphiQL tab titled `title`.
    async fn click_tab(&self, title: &str) {
        let expression = format!(
            "(() => {{ const tab = [...document.querySelectorAll('.graphiql-tab-button')]
                .find((b) => b.textContent.trim() === {title:?});
              const r = tab?.getBoundingClientRect();
              return r ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()"
        );
        let centre = self.wait_for(&format!("the {title} tab"), &expression).await;
        self.click_at(&centre).await;
    }

    async fn click_at(&self, centre: &Value) {
        for kind in ["mousePressed", "mouseReleased"] {
            self.command(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": centre[0], "y": centre[1], "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Focuses the field `selector` finds and types `text` into it.
    async fn type_into(&self, selector: &str, text: &str) {
        self.click(selector).await;
        self.command("Input.insertText", json!({ "text": text })).await;
    }
}

/// A DevTools protocol connection: commands by id, answers matched up by a
/// reader task. Events are not needed here and are dropped.
struct DevTools {
    sink: AsyncMutex<Sink>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: AtomicU64,
}

impl DevTools {
    async fn connect(endpoint: &str) -> Arc<Self> {
        let (socket, _) = tokio_tungstenite::connect_async(endpoint)
            .await
            .expect("connecting to DevTools");
        let (sink, mut stream) = socket.split();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let Some(id) = value.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                if let Some(waiting) = answers.lock().unwrap().remove(&id) {
                    let _ = waiting.send(value);
                }
            }
        });
        Arc::new(Self {
            sink: AsyncMutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
        })
    }

    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, answer);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.sink
            .lock()
            .await
            .send(Message::text(message.to_string()))
            .await
            .expect("sending to DevTools");
        let reply = tokio::time::timeout(PATIENCE, answered)
            .await
            .unwrap_or_else(|_| panic!("DevTools did not answer {method}"))
            .expect("the DevTools connection closed");
        if let Some(error) = reply.get("error") {
            panic!("DevTools refused {method}: {error}");
        }
        reply["result"].clone()
    }
}
