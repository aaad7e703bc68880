//! Small built-in web pages, so the server works without a front end of
//! its own: `/device` (sign in and approve or deny a device login),
//! `/verify-email`, `/reset-password` and `/accept-invitation` (the targets
//! of the links in emails when `APP_URL` is the server itself).
//!
//! Each page is static HTML with inline CSS and script that talks to
//! `graphql` (relative, so a `PUBLIC_URL` with a path prefix still works)
//! with fetch. Nothing from the request is written into the HTML: the
//! script reads the query string and fills the page with `textContent`, so
//! there is nothing to escape. Credentials live only in the script's
//! memory, never in cookies or storage. The headers forbid framing
//! (clickjacking an "Approve" button), every external resource, and the
//! Referer (tokens travel in the URL).

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use tollgate_auth::AppState;

/// The policy every page is served with: its own inline script and style,
/// requests to its own origin only, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline' 'self'; \
     style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /device`: sign in (with a password or a configured identity
/// provider), type (or confirm the prefilled `?code=`) the user code, see
/// which client asks and from where, approve or deny.
pub async fn device_page(State(app): State<AppState>) -> Response {
    let body = DEVICE_BODY.replace("<!--providers-->", &provider_buttons(&app.config().oauth.keys()));
    page("Sign in a device", &body, DEVICE_SCRIPT)
}

/// A "Continue with ..." button per identity provider. Keys come from the
/// configuration (letters, digits and underscores), never from the request.
fn provider_buttons(keys: &[String]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let buttons: String = keys
        .iter()
        .filter(|key| key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|key| {
            let label = match key.as_str() {
                "github" => "GitHub",
                "google" => "Google",
                other => other,
            };
            format!(
                "  <button type=\"button\" class=\"secondary\" data-provider=\"{key}\">Continue with {label}</button>\n"
            )
        })
        .collect();
    format!("<div id=\"providers\">\n  <p class=\"muted\">Or, without a password:</p>\n{buttons}</div>\n")
}

/// `GET /verify-email?token=...`: verifies the address and says so.
pub async fn verify_email_page() -> Response {
    page("Verify your email", VERIFY_EMAIL_BODY, VERIFY_EMAIL_SCRIPT)
}

/// `GET /accept-invitation?token=...`: sign in with the invited address
/// (or create the account), then join the organization.
pub async fn accept_invitation_page() -> Response {
    page("Join an organization", ACCEPT_INVITATION_BODY, ACCEPT_INVITATION_SCRIPT)
}

/// `GET /reset-password?token=...`: a form for the new password.
pub async fn reset_password_page() -> Response {
    page("Choose a new password", RESET_PASSWORD_BODY, RESET_PASSWORD_SCRIPT)
}

/// A complete page with the security headers.
fn page(title: &str, body: &str, script: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title} · Tollgate</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n\
         <script>\n{COMMON_SCRIPT}\n{script}\n</script>\n</body>\n</html>\n"
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        html,
    )
        .into_response()
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6475; --bg: #f5f6f8; --card: #fff;
  --line: #d8dce3; --accent: #2f5bd3; --danger: #b42318; --ok: #127a3c; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e7e9ee; --muted: #a3abba; --bg: #14171d; --card: #1d2129; --line: #343a46;
    --accent: #7c9cff; --danger: #ff8a80; --ok: #6fd39a; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
main { max-width: 30rem; margin: 3rem auto; padding: 2rem; background: var(--card);
  border: 1px solid var(--line); border-radius: 12px; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
h2 { font-size: 1.05rem; margin: 1.25rem 0 .75rem; }
p { margin: .5rem 0; }
label { display: block; margin: .75rem 0; font-weight: 600; }
input { display: block; width: 100%; margin-top: .3rem; padding: .55rem .7rem; font: inherit;
  color: inherit; background: transparent; border: 1px solid var(--line); border-radius: 8px; }
input.code { font-family: ui-monospace, "SF Mono", Menlo, monospace; font-size: 1.3rem;
  letter-spacing: .15em; text-transform: uppercase; }
button { font: inherit; font-weight: 600; padding: .55rem 1.1rem; border-radius: 8px; cursor: pointer;
  border: 1px solid var(--accent); background: var(--accent); color: #fff; margin: .5rem .5rem 0 0; }
button.secondary { background: transparent; color: var(--fg); border-color: var(--line); }
button.link { background: none; border: none; color: var(--accent); padding: 0; margin: 0; font-weight: 400;
  text-decoration: underline; }
button:disabled { opacity: .6; cursor: progress; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 1rem 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.mono { font-family: ui-monospace, "SF Mono", Menlo, monospace; }
.muted { color: var(--muted); }
.warn { padding: .6rem .8rem; border-left: 3px solid var(--danger); background: rgba(180, 35, 24, .08); }
#status:empty { display: none; }
#status { padding: .6rem .8rem; border-radius: 8px; border: 1px solid var(--line); }
#status.error { border-color: var(--danger); color: var(--danger); }
#status.ok { border-color: var(--ok); color: var(--ok); }
[hidden] { display: none !important; }
"#;

/// `gql()` and the status line, shared by every page.
const COMMON_SCRIPT: &str = r#"
"use strict";
class GqlError extends Error {
  constructor(message, code, field, mfaToken) {
    super(message); this.code = code; this.field = field; this.mfaToken = mfaToken;
  }
}
async function gql(query, variables, token) {
  const headers = { "Content-Type": "application/json", "Accept": "application/json" };
  if (token) headers["Authorization"] = "Bearer " + token;
  let response;
  try {
    response = await fetch("graphql", {
      method: "POST", headers, credentials: "omit", cache: "no-store",
      body: JSON.stringify({ query, variables }),
    });
  } catch (e) {
    throw new GqlError("Cannot reach the server. Check your connection and try again.", "NETWORK");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!body) throw new GqlError("The server answered unexpectedly (HTTP " + response.status + "). Try again later.", "HTTP");
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const ext = first.extensions || {};
    let message = first.message || "Something went wrong.";
    if (ext.code === "RATE_LIMITED" || ext.code === "ACCOUNT_LOCKED") {
      message = ext.code === "ACCOUNT_LOCKED" ? "Too many failed sign-ins." : "Too many attempts.";
      if (ext.retryAfter) message += " Try again in " + ext.retryAfter + " seconds.";
    }
    throw new GqlError(message, ext.code, ext.field, ext.mfaToken);
  }
  return body.data;
}
const statusLine = document.getElementById("status");
function say(text, kind) {
  statusLine.textContent = text || "";
  statusLine.className = kind || "";
}
async function busy(button, work) {
  button.disabled = true;
  try { await work(); } finally { button.disabled = false; }
}
const params = new URLSearchParams(location.search);
"#;

const DEVICE_BODY: &str = r#"
<p class="muted">An app or device asked to sign in to your account. Sign in here, check the request, then approve or deny it.</p>
<div id="status" role="status" aria-live="polite"></div>

<form id="signin">
  <h2>1. Sign in</h2>
  <label>Email <input type="email" name="email" autocomplete="username" required></label>
  <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
<!--providers-->
</form>

<form id="mfa-form" hidden>
  <h2>1. Two-factor code</h2>
  <p class="muted">Your account uses two-factor authentication: enter the code your authenticator app shows, or one of your recovery codes.</p>
  <label>Code <input name="mfa" autocomplete="one-time-code" spellcheck="false" required></label>
  <button type="submit">Verify</button>
</form>

<form id="code-form" hidden>
  <h2>2. Enter the code shown on your device</h2>
  <p class="muted">Signed in as <strong id="who"></strong>. <button type="button" id="signout" class="link">Not you?</button></p>
  <label>Code <input class="code" name="code" autocomplete="off" autocapitalize="characters" spellcheck="false"
    placeholder="BCDF-GHJK" maxlength="16" required></label>
  <button type="submit">Continue</button>
</form>

<section id="confirm" hidden>
  <h2>3. Is this your device?</h2>
  <dl>
    <dt>Application</dt><dd id="client-name"></dd>
    <dt>Address</dt><dd id="client-ip" class="mono"></dd>
    <dt>Software</dt><dd id="user-agent" class="muted"></dd>
    <dt>Code</dt><dd id="user-code" class="mono"></dd>
    <dt>Asked at</dt><dd id="created-at"></dd>
    <dt>Expires at</dt><dd id="expires-at"></dd>
  </dl>
  <p class="warn">Approve only if you started this sign-in yourself, just now, and the code matches your device.
    The device gets full access to your account until you sign it out.</p>
  <button type="button" id="approve">Approve</button>
  <button type="button" id="deny" class="secondary">Deny</button>
  <button type="button" id="other-code" class="link">Use another code</button>
</section>

<section id="done" hidden>
  <p id="done-text"></p>
</section>
"#;

const DEVICE_SCRIPT: &str = r#"
const signin = document.getElementById("signin");
const codeForm = document.getElementById("code-form");
const mfaForm = document.getElementById("mfa-form");
const confirmBox = document.getElementById("confirm");
const done = document.getElementById("done");
let token = null;
let pendingCode = null;
// Spent by verifyMfa: the password or provider sign-in's pending second step.
let mfaToken = null;

function show(section) {
  for (const s of [signin, mfaForm, codeForm, confirmBox, done]) s.hidden = s !== section;
}
function when(iso) {
  const at = new Date(iso);
  return isNaN(at) ? iso : at.toLocaleString();
}
// The page's own session ends once it has served its purpose.
async function signOut() {
  if (token) { try { await gql("mutation { logout }", {}, token); } catch (e) { /* best effort */ } }
  token = null;
}
function signedOut(error) {
  if (error && error.code === "UNAUTHENTICATED") {
    token = null;
    show(signin);
    say("Your sign-in has expired. Please sign in again.", "error");
    return true;
  }
  return false;
}

// Back from an identity provider, `code` is the provider sign-in's
// one-time code and the device's code travels as `userCode`.
const fromProvider = params.get("via") === "provider";
codeForm.elements.code.value = (fromProvider ? params.get("userCode") : params.get("code")) || "";

async function signedIn(payload) {
  token = payload.accessToken;
  signin.elements.password.value = "";
  document.getElementById("who").textContent = payload.user.email;
  show(codeForm);
  if (codeForm.elements.code.value.trim()) {
    await lookUp();
  } else {
    codeForm.elements.code.focus();
  }
}

signin.addEventListener("submit", (event) => {
  event.preventDefault();
  const button = signin.querySelector("button[type=submit]");
  busy(button, async () => {
    say("");
    try {
      const data = await gql(
        "mutation ($input: LoginInput!) { login(input: $input) { accessToken user { email } } }",
        { input: { email: signin.elements.email.value, password: signin.elements.password.value } });
      await signedIn(data.login);
    } catch (e) {
      if (!askSecondFactor(e)) say(e.message, "error");
    }
  });
});

// A first factor accepted for an account with TOTP on: ask for the code.
function askSecondFactor(error) {
  if (error.code !== "MFA_REQUIRED" || !error.mfaToken) return false;
  mfaToken = error.mfaToken;
  say("");
  show(mfaForm);
  mfaForm.elements.mfa.focus();
  return true;
}
mfaForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const button = mfaForm.querySelector("button[type=submit]");
  busy(button, async () => {
    say("");
    try {
      const data = await gql(
        "mutation ($token: String!, $code: String!) { verifyMfa(mfaToken: $token, code: $code) { accessToken user { email } } }",
        { token: mfaToken, code: mfaForm.elements.mfa.value.trim() });
      mfaToken = null;
      mfaForm.elements.mfa.value = "";
      await signedIn(data.verifyMfa);
    } catch (e) {
      if (e.code === "UNAUTHENTICATED") {
        mfaToken = null;
        show(signin);
      }
      say(e.message, "error");
    }
  });
});

// This page without its query: where a provider sends the browser back.
function pageUrl() {
  const url = new URL(location.href);
  url.search = "";
  url.hash = "";
  return url;
}
for (const button of document.querySelectorAll("button[data-provider]")) {
  button.addEventListener("click", () => busy(button, async () => {
    say("");
    const back = pageUrl();
    back.searchParams.set("via", "provider");
    const typed = codeForm.elements.code.value.trim();
    if (typed) back.searchParams.set("userCode", typed);
    try {
      const data = await gql(
        "mutation ($provider: String!, $back: String!) { startOAuthLogin(provider: $provider, redirectUri: $back) { authorizationUrl } }",
        { provider: button.dataset.provider, back: back.toString() });
      location.assign(data.startOAuthLogin.authorizationUrl);
    } catch (e) {
      say(e.message, "error");
    }
  }));
}
if (fromProvider) {
  const oauthCode = params.get("code");
  const failure = params.get("error_description") || params.get("error");
  const back = pageUrl();
  if (codeForm.elements.code.value) back.searchParams.set("code", codeForm.elements.code.value);
  // The one-time code leaves the address bar and the history.
  history.replaceState(null, "", back.toString());
  if (failure) {
    say("Signing in with the provider failed: " + failure, "error");
  } else if (oauthCode) {
    (async () => {
      try {
        const data = await gql(
          "mutation ($code: String!) { completeOAuthLogin(code: $code) { accessToken user { email } } }",
          { code: oauthCode });
        await signedIn(data.completeOAuthLogin);
      } catch (e) {
        if (!askSecondFactor(e)) say(e.message, "error");
      }
    })();
  }
}

document.getElementById("signout").addEventListener("click", async () => {
  await signOut();
  say("");
  show(signin);
});

async function lookUp() {
  say("");
  const typed = codeForm.elements.code.value;
  try {
    const data = await gql(
      "query ($code: String!) { deviceLogin(userCode: $code) { userCode clientName clientIp userAgent createdAt expiresAt } }",
      { code: typed }, token);
    const request = data.deviceLogin;
    if (!request) {
      say("No sign-in request waits under this code. It may have expired (codes last 10 minutes) or been answered already; start again on your device.", "error");
      return;
    }
    pendingCode = request.userCode;
    document.getElementById("client-name").textContent = request.clientName || "(unnamed application)";
    document.getElementById("client-ip").textContent = request.clientIp || "unknown";
    document.getElementById("user-agent").textContent = request.userAgent || "unknown";
    document.getElementById("user-code").textContent = request.userCode;
    document.getElementById("created-at").textContent = when(request.createdAt);
    document.getElementById("expires-at").textContent = when(request.expiresAt);
    show(confirmBox);
  } catch (e) {
    if (!signedOut(e)) say(e.message, "error");
  }
}

codeForm.addEventListener("submit", (event) => {
  event.preventDefault();
  busy(codeForm.querySelector("button[type=submit]"), lookUp);
});

document.getElementById("other-code").addEventListener("click", () => {
  pendingCode = null;
  codeForm.elements.code.value = "";
  say("");
  show(codeForm);
  codeForm.elements.code.focus();
});

function decide(mutation, button, message) {
  busy(button, async () => {
    say("");
    try {
      await gql("mutation ($code: String!) { " + mutation + "(userCode: $code) }", { code: pendingCode }, token);
      await signOut();
      document.getElementById("done-text").textContent = message;
      say("Done.", "ok");
      show(done);
    } catch (e) {
      if (!signedOut(e)) say(e.message, "error");
    }
  });
}
document.getElementById("approve").addEventListener("click", (event) =>
  decide("approveDeviceLogin", event.currentTarget,
    "The device is signed in. You can go back to it and close this page."));
document.getElementById("deny").addEventListener("click", (event) =>
  decide("denyDeviceLogin", event.currentTarget,
    "The request was denied; the device was not signed in. You can close this page."));
"#;

const ACCEPT_INVITATION_BODY: &str = r#"
<p class="muted">You were invited to join an organization. Sign in with the address the invitation was sent to, or create your account with it.</p>
<div id="status" role="status" aria-live="polite"></div>

<form id="signin">
  <label>Email <input type="email" name="email" autocomplete="username" required></label>
  <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
  <button type="submit" name="login">Sign in and join</button>
  <p class="muted">No account yet? Fill in a name too and create one: the invitation lets you join at once.</p>
  <label>Name <input name="name" autocomplete="name"></label>
  <button type="button" id="register" class="secondary">Create account and join</button>
</form>

<section id="done" hidden>
  <p>You joined <strong id="organization"></strong> as <span id="role"></span>. You can close this page.</p>
</section>
"#;

const ACCEPT_INVITATION_SCRIPT: &str = r#"
const invitationToken = params.get("token");
// Keep the token out of the address bar and history once read.
history.replaceState(null, "", location.pathname);
const form = document.getElementById("signin");
const MEMBERSHIP = "organization { name } role";

function joined(membership) {
  document.getElementById("organization").textContent = membership.organization.name;
  document.getElementById("role").textContent = membership.role.toLowerCase();
  form.hidden = true;
  document.getElementById("done").hidden = false;
  say("Welcome aboard.", "ok");
}
async function signOut(token) {
  try { await gql("mutation { logout }", {}, token); } catch (e) { /* best effort */ }
}

if (!invitationToken) {
  form.hidden = true;
  say("This link is incomplete. Open the link from the email again, or copy the whole address into your browser.", "error");
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  busy(form.querySelector("button[name=login]"), async () => {
    say("");
    try {
      const data = await gql(
        "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }",
        { input: { email: form.elements.email.value, password: form.elements.password.value } });
      const token = data.login.accessToken;
      form.elements.password.value = "";
      try {
        const accepted = await gql(
          "mutation ($token: String!) { acceptInvitation(token: $token) { " + MEMBERSHIP + " } }",
          { token: invitationToken }, token);
        joined(accepted.acceptInvitation);
      } finally {
        await signOut(token);
      }
    } catch (e) {
      say(e.code === "NOT_FOUND" ? "This invitation was sent to another address. Sign in with that one." : e.message, "error");
    }
  });
});

document.getElementById("register").addEventListener("click", (event) => {
  busy(event.currentTarget, async () => {
    say("");
    try {
      const data = await gql(
        "mutation ($input: RegisterInput!) { register(input: $input) { accessToken user { memberships { " + MEMBERSHIP + " } } } }",
        { input: { email: form.elements.email.value, password: form.elements.password.value,
          name: form.elements.name.value, invitationToken } });
      const memberships = data.register.user.memberships.filter((m) => m.role !== "OWNER");
      await signOut(data.register.accessToken);
      if (memberships.length) joined(memberships[memberships.length - 1]);
      else say("Your account was created. Sign in above to join.", "ok");
    } catch (e) {
      say(e.message, "error");
    }
  });
});
"#;

const VERIFY_EMAIL_BODY: &str = r#"
<div id="status" role="status" aria-live="polite">Verifying your email address…</div>
"#;

const VERIFY_EMAIL_SCRIPT: &str = r#"
const emailToken = params.get("token");
// Keep the token out of the address bar and history once read.
history.replaceState(null, "", location.pathname);
(async () => {
  if (!emailToken) {
    say("This link is incomplete. Open the link from the email again, or copy the whole address into your browser.", "error");
    return;
  }
  try {
    const data = await gql("mutation ($token: String!) { verifyEmail(token: $token) { email } }", { token: emailToken });
    say("Thank you: " + data.verifyEmail.email + " is verified. You can close this page.", "ok");
  } catch (e) {
    if (e.code === "BAD_USER_INPUT") {
      say("This link is invalid, has expired, or was used already. If your address is not verified yet, sign in and ask for a new email.", "error");
    } else {
      say(e.message, "error");
    }
  }
})();
"#;

const RESET_PASSWORD_BODY: &str = r#"
<div id="status" role="status" aria-live="polite"></div>
<form id="reset">
  <p class="muted">Choose a new password: 8 to 128 characters, not a common one. Signing in everywhere else ends.</p>
  <label>New password <input type="password" name="password" autocomplete="new-password" minlength="8" maxlength="128" required></label>
  <label>Repeat it <input type="password" name="repeat" autocomplete="new-password" minlength="8" maxlength="128" required></label>
  <button type="submit">Change password</button>
</form>
"#;

const RESET_PASSWORD_SCRIPT: &str = r#"
const resetToken = params.get("token");
// Keep the token out of the address bar and history once read.
history.replaceState(null, "", location.pathname);
const form = document.getElementById("reset");
const invalidLink = "This link is invalid, has expired, or was used already. Ask for a new password reset email.";
if (!resetToken) {
  form.hidden = true;
  say("This link is incomplete. Open the link from the email again, or copy the whole address into your browser.", "error");
}
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const password = form.elements.password.value;
  if (password !== form.elements.repeat.value) {
    say("The two passwords differ.", "error");
    return;
  }
  busy(form.querySelector("button"), async () => {
    say("");
    try {
      await gql("mutation ($token: String!, $password: String!) { resetPassword(token: $token, newPassword: $password) }",
        { token: resetToken, password });
      form.hidden = true;
      say("Your password is changed and every session was signed out. Sign in with the new password.", "ok");
    } catch (e) {
      if (e.code === "BAD_USER_INPUT" && e.field === "token") {
        form.hidden = true;
        say(invalidLink, "error");
      } else {
        say(e.message, "error");
      }
    }
  });
});
"#;
