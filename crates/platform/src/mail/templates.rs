//! The emails accounts and organizations send, as [`Email`]s ready for
//! [`crate::mail::enqueue`].
//!
//! Every link is `APP_URL` + a fixed path + `?token=...`
//! (`shared/spec/operations.md`, "Links in emails"), so a web app can host
//! the pages. The plain-text part always carries the full link, for mail
//! clients that show no HTML and for people who copy links by hand.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use tollgate_core::Config;

use crate::mail::Email;

/// `kind` of the email that confirms an address.
pub const KIND_VERIFY_EMAIL: &str = "verify_email";
/// `kind` of the email that carries a password reset link.
pub const KIND_RESET_PASSWORD: &str = "reset_password";
/// `kind` of the notice that a password was changed.
pub const KIND_PASSWORD_CHANGED: &str = "password_changed";
/// `kind` of an invitation to an organization.
pub const KIND_INVITATION: &str = "invitation";
/// `kind` of the notice that an organization crossed 50, 80 or 100 percent
/// of its token limit.
pub const KIND_USAGE_THRESHOLD: &str = "usage_threshold";

/// Everything but RFC 3986's unreserved characters is escaped, so a token
/// survives any query-string parser unchanged.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The email that confirms `to` belongs to its user; the link is valid for
/// 24 hours.
pub fn verify_email(config: &Config, to: &str, name: &str, token: &str) -> Email {
    let link = token_link(config, "verify-email", token);
    let text = format!(
        "Hi {name},\n\n\
         Please confirm your email address by opening this link:\n\n\
         {link}\n\n\
         The link is valid for 24 hours. If you did not create an account, you can ignore this email.\n",
        name = one_line(name),
    );
    let html = html_page(
        "Confirm your email address",
        &format!(
            "<p>Hi {name},</p>\n\
             <p>Please confirm your email address.</p>\n\
             {button}\n\
             <p>The link is valid for 24 hours. If you did not create an account, you can ignore this email.</p>",
            name = html_escape(name),
            button = html_button(&link, "Confirm email address"),
        ),
    );
    Email {
        to: to.to_owned(),
        subject: "Confirm your email address".to_owned(),
        text,
        html,
        kind: KIND_VERIFY_EMAIL,
    }
}

/// The email with a link to choose a new password; valid for 1 hour.
pub fn reset_password(config: &Config, to: &str, name: &str, token: &str) -> Email {
    let link = token_link(config, "reset-password", token);
    let text = format!(
        "Hi {name},\n\n\
         Someone asked to reset the password of your account. To choose a new password, open this link:\n\n\
         {link}\n\n\
         The link is valid for 1 hour and works once. If you did not ask for this, ignore this email: \
         your password stays as it is.\n",
        name = one_line(name),
    );
    let html = html_page(
        "Reset your password",
        &format!(
            "<p>Hi {name},</p>\n\
             <p>Someone asked to reset the password of your account.</p>\n\
             {button}\n\
             <p>The link is valid for 1 hour and works once. If you did not ask for this, ignore this email: \
             your password stays as it is.</p>",
            name = html_escape(name),
            button = html_button(&link, "Choose a new password"),
        ),
    );
    Email {
        to: to.to_owned(),
        subject: "Reset your password".to_owned(),
        text,
        html,
        kind: KIND_RESET_PASSWORD,
    }
}

/// The notice sent after a password change. No link: a notice that asks
/// to click something is what phishing looks like, and an owner who did
/// not make the change can start a reset from the app.
pub fn password_changed(to: &str, name: &str) -> Email {
    let text = format!(
        "Hi {name},\n\n\
         The password of your account was just changed.\n\n\
         If you did not change it, reset your password at once from the sign-in page and contact support.\n",
        name = one_line(name),
    );
    let html = html_page(
        "Your password was changed",
        &format!(
            "<p>Hi {name},</p>\n\
             <p>The password of your account was just changed.</p>\n\
             <p>If you did not change it, reset your password at once from the sign-in page and contact support.</p>",
            name = html_escape(name),
        ),
    );
    Email {
        to: to.to_owned(),
        subject: "Your password was changed".to_owned(),
        text,
        html,
        kind: KIND_PASSWORD_CHANGED,
    }
}

/// An invitation from `inviter` to join `organization`; the link is valid
/// for 7 days.
pub fn invitation(config: &Config, to: &str, organization: &str, inviter: &str, token: &str) -> Email {
    let link = token_link(config, "accept-invitation", token);
    let (organization_line, inviter_line) = (one_line(organization), one_line(inviter));
    let text = format!(
        "Hi,\n\n\
         {inviter_line} invited you to join {organization_line}. To accept, open this link:\n\n\
         {link}\n\n\
         The invitation is valid for 7 days. If you did not expect it, you can ignore this email.\n",
    );
    let html = html_page(
        "You are invited",
        &format!(
            "<p>Hi,</p>\n\
             <p><strong>{inviter}</strong> invited you to join <strong>{organization}</strong>.</p>\n\
             {button}\n\
             <p>The invitation is valid for 7 days. If you did not expect it, you can ignore this email.</p>",
            inviter = html_escape(inviter),
            organization = html_escape(organization),
            button = html_button(&link, "Accept the invitation"),
        ),
    );
    Email {
        to: to.to_owned(),
        subject: format!("{inviter_line} invited you to join {organization_line}"),
        text,
        html,
        kind: KIND_INVITATION,
    }
}

/// The notice to an OWNER or ADMIN that `organization` has used
/// `threshold` percent of its token limit this period. No link, like
/// other notices: the dashboard is where people already look.
pub fn usage_threshold(to: &str, organization: &str, threshold: i32, tokens_used: i64, token_limit: i64) -> Email {
    let organization_line = one_line(organization);
    let verdict = if threshold >= 100 {
        "The budget is spent: clients that ask before each call are now told to stop until the next period."
    } else {
        "Clients keep working; at 100 percent, clients that ask before each call are told to stop."
    };
    let text = format!(
        "Hi,\n\n\
         {organization_line} has used {threshold}% of its token limit for this period \
         ({tokens_used} of {token_limit} tokens).\n\n\
         {verdict}\n",
    );
    let html = html_page(
        "Token usage",
        &format!(
            "<p>Hi,</p>\n\
             <p><strong>{organization}</strong> has used {threshold}% of its token limit for this period \
             ({tokens_used} of {token_limit} tokens).</p>\n\
             <p>{verdict}</p>",
            organization = html_escape(organization),
        ),
    );
    Email {
        to: to.to_owned(),
        subject: format!("{organization_line} has used {threshold}% of its token limit"),
        text,
        html,
        kind: KIND_USAGE_THRESHOLD,
    }
}

/// `APP_URL/<path>?token=<token>`, the token percent-encoded.
fn token_link(config: &Config, path: &str, token: &str) -> String {
    format!(
        "{}?token={}",
        config.app_endpoint(path),
        utf8_percent_encode(token, QUERY_VALUE)
    )
}

/// A user-chosen name on one line: control characters (a newline in an
/// organization name, say) would otherwise break the subject or let a name
/// forge extra lines of the text.
pub fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Escapes text for HTML content and double- or single-quoted attributes.
pub fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link styled as a button, with the address spelled out below for
/// clients that strip links.
fn html_button(link: &str, label: &str) -> String {
    let href = html_escape(link);
    format!(
        "<p><a href=\"{href}\" style=\"display:inline-block;padding:10px 18px;background:#2563eb;color:#ffffff;\
         text-decoration:none;border-radius:6px\">{label}</a></p>\n\
         <p style=\"font-size:13px;color:#555555\">Or copy this link into your browser:<br>\
         <a href=\"{href}\">{href}</a></p>",
        label = html_escape(label),
    )
}

/// A minimal, self-contained HTML document (mail clients ignore external
/// stylesheets, so styles are inline).
fn html_page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:15px;\
         line-height:1.5;color:#111111\">\n{body}\n</body>\n</html>\n",
        title = html_escape(title),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config() -> Config {
        let vars = HashMap::from([("APP_URL".to_owned(), "https://app.example.com/".to_owned())]);
        Config::from_vars(&vars).unwrap()
    }

    #[test]
    fn links_are_app_url_plus_path_and_the_encoded_token() {
        let c = config();
        let email = verify_email(&c, "ada@example.com", "Ada", "abc+/=");
        assert!(
            email
                .text
                .contains("https://app.example.com/verify-email?token=abc%2B%2F%3D\n")
        );
        assert!(
            email
                .html
                .contains("href=\"https://app.example.com/verify-email?token=abc%2B%2F%3D\"")
        );
        assert!(email.text.contains("24 hours"));
        assert_eq!(email.kind, KIND_VERIFY_EMAIL);
        assert_eq!(email.to, "ada@example.com");

        let email = reset_password(&c, "ada@example.com", "Ada", "t-1_x.y~z");
        assert!(
            email
                .text
                .contains("https://app.example.com/reset-password?token=t-1_x.y~z\n")
        );
        assert!(email.text.contains("1 hour"));

        let email = invitation(&c, "bob@example.com", "Acme", "Ada", "tok");
        assert!(
            email
                .text
                .contains("https://app.example.com/accept-invitation?token=tok\n")
        );
        assert!(email.text.contains("7 days"));
        assert!(email.text.contains("Ada invited you to join Acme"));
        assert_eq!(email.subject, "Ada invited you to join Acme");
    }

    #[test]
    fn names_are_escaped_in_html_and_kept_on_one_line() {
        let c = config();
        let email = invitation(
            &c,
            "bob@example.com",
            "<script>alert('x')</script>",
            "Eve\r\nBcc: x",
            "tok",
        );
        assert!(!email.html.contains("<script>"));
        assert!(email.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
        assert!(!email.text.contains("Eve\r\n"));

        let email = verify_email(&c, "ada@example.com", "A & \"B\"", "tok");
        assert!(email.html.contains("A &amp; &quot;B&quot;"));
        assert!(email.text.contains("Hi A & \"B\","));
    }

    #[test]
    fn the_password_notice_has_no_link() {
        let email = password_changed("ada@example.com", "Ada");
        assert!(!email.text.contains("http"));
        assert!(!email.html.contains("href"));
        assert_eq!(email.kind, KIND_PASSWORD_CHANGED);
    }
}
