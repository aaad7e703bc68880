//! The email outbox, end to end: rows enqueued in the database reach a
//! real (fake) SMTP server as a mail client would receive them.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tollgate::{
    db::schema::email_outbox,
    platform::mail::{self, Email, templates},
};
use uuid::Uuid;

use crate::harness::{
    TestApp, TestAppOptions,
    smtp::{FakeSmtp, FakeSmtpOptions},
};

const APP_URL: &str = "https://app.example.com";

async fn app_sending_to(smtp: &FakeSmtp) -> TestApp {
    TestApp::spawn_with(TestAppOptions {
        vars: vec![
            ("SMTP_URL".into(), format!("smtp://127.0.0.1:{}", smtp.port())),
            ("APP_URL".into(), APP_URL.into()),
            ("MAIL_FROM".into(), "Tollgate <no-reply@example.com>".into()),
        ],
        ..Default::default()
    })
    .await
}

fn simple_email(to: &str) -> Email {
    Email {
        to: to.to_owned(),
        subject: format!("Hello {to}"),
        text: "plain".to_owned(),
        html: "<p>html</p>".to_owned(),
        kind: "test",
    }
}

/// Commits `email` to the outbox and nudges the workers.
async fn enqueue(app: &TestApp, email: &Email) -> Uuid {
    let mut conn = app.db().await;
    let id = mail::enqueue(&mut conn, email, app.state.now())
        .await
        .expect("enqueueing an email");
    mail::wake();
    id
}

/// Status, attempts and last error of an outbox row.
async fn outbox_row(app: &TestApp, id: Uuid) -> (String, i32, Option<String>) {
    let mut conn = app.db().await;
    email_outbox::table
        .find(id)
        .select((email_outbox::status, email_outbox::attempts, email_outbox::last_error))
        .first(&mut conn)
        .await
        .expect("the outbox row")
}

/// Polls the row until `done` holds (the worker updates it just after the
/// SMTP exchange, so there is no event to wait on from the outside).
async fn wait_for_row(
    app: &TestApp,
    id: Uuid,
    done: impl Fn(&(String, i32, Option<String>)) -> bool,
) -> (String, i32, Option<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = outbox_row(app, id).await;
        if done(&row) {
            return row;
        }
        assert!(tokio::time::Instant::now() < deadline, "outbox row stuck at {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_verification_email_reaches_the_user_with_text_html_and_the_exact_link() {
    let smtp = FakeSmtp::start().await;
    let app = app_sending_to(&smtp).await;
    let token = "k3Y-_9+/=";
    let email = templates::verify_email(app.state.config(), "ada@example.com", "Ada <Lovelace>", token);
    let id = enqueue(&app, &email).await;

    let message = smtp.next_message().await;
    assert_eq!(message.to, ["ada@example.com"]);
    assert_eq!(message.from, "no-reply@example.com");
    assert_eq!(message.header("Subject").as_deref(), Some("Confirm your email address"));
    assert!(message.header("From").unwrap().contains("no-reply@example.com"));
    assert!(message.header("To").unwrap().contains("ada@example.com"));
    assert!(
        message
            .header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{}",
        message.data
    );

    let link = format!("{APP_URL}/verify-email?token=k3Y-_9%2B%2F%3D");
    let text = message.part("text/plain").expect("a plain-text part").body;
    let link_line = text
        .lines()
        .find(|line| line.starts_with("https://"))
        .expect("a link in the text");
    assert_eq!(link_line, link);
    assert!(text.contains("Hi Ada <Lovelace>,"), "{text}");
    assert!(text.contains("24 hours"), "{text}");

    let html = message.part("text/html").expect("an HTML part").body;
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    assert!(html.contains("Ada &lt;Lovelace&gt;"), "{html}");
    assert!(!html.contains("<Lovelace>"), "{html}");

    let (status, attempts, error) = wait_for_row(&app, id, |row| row.0 != "PENDING").await;
    assert_eq!((status.as_str(), attempts, error), ("SENT", 1, None));
    smtp.assert_no_message_within(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_temporary_smtp_failure_is_retried_after_the_backoff_and_delivered() {
    let smtp = FakeSmtp::start_with(FakeSmtpOptions { fail_first_data: 1 }).await;
    let app = app_sending_to(&smtp).await;
    let id = enqueue(&app, &simple_email("bob@example.com")).await;

    smtp.wait_for_rejections(1).await;
    let (status, attempts, error) = wait_for_row(&app, id, |row| row.2.is_some()).await;
    assert_eq!((status.as_str(), attempts), ("PENDING", 1));
    assert!(error.unwrap().contains("451"));
    // The retry waits for its backoff (5 s), on the app's clock.
    smtp.assert_no_message_within(Duration::from_millis(700)).await;

    app.clock.advance(chrono::Duration::seconds(6));
    mail::wake();
    let message = smtp.next_message().await;
    assert_eq!(message.to, ["bob@example.com"]);
    assert_eq!(message.part("text/plain").unwrap().body, "plain");
    let (status, attempts, _) = wait_for_row(&app, id, |row| row.0 != "PENDING").await;
    assert_eq!((status.as_str(), attempts), ("SENT", 2));
}

#[tokio::test]
async fn an_email_is_given_up_after_eight_failed_attempts() {
    let smtp = FakeSmtp::start_with(FakeSmtpOptions {
        fail_first_data: usize::MAX,
    })
    .await;
    let app = app_sending_to(&smtp).await;
    let id = enqueue(&app, &simple_email("carol@example.com")).await;

    smtp.wait_for_rejections(1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for attempt in 2..=8 {
        // Jump past any backoff (10 minutes at most). Repeated until the
        // retry happens, since a jump made before the worker recorded the
        // last failure only moves that failure's retry later.
        loop {
            assert!(tokio::time::Instant::now() < deadline, "attempt {attempt} never came");
            app.clock.advance(chrono::Duration::minutes(11));
            mail::wake();
            if smtp.rejected_within(attempt, Duration::from_millis(300)).await {
                break;
            }
        }
    }
    let (status, attempts, error) = wait_for_row(&app, id, |row| row.0 != "PENDING").await;
    assert_eq!((status.as_str(), attempts), ("FAILED", 8));
    assert!(error.unwrap().contains("451"));

    app.clock.advance(chrono::Duration::hours(1));
    mail::wake();
    assert!(
        !smtp.rejected_within(9, Duration::from_millis(700)).await,
        "no ninth attempt"
    );
    assert_eq!(outbox_row(&app, id).await.1, 8);
}

/// The bodies an outbox row still keeps.
async fn bodies(app: &TestApp, id: Uuid) -> (String, String) {
    let mut conn = app.db().await;
    email_outbox::table
        .find(id)
        .select((email_outbox::text_body, email_outbox::html_body))
        .first(&mut conn)
        .await
        .expect("the outbox row")
}

#[tokio::test]
async fn an_email_given_up_on_keeps_no_body_and_so_no_live_link() {
    let smtp = FakeSmtp::start().await;
    let app = app_sending_to(&smtp).await;
    // No SMTP server takes this recipient: a permanent failure, given up at once.
    let mut email = templates::reset_password(app.state.config(), "ada@example.com", "Ada", "live-reset-token");
    email.to = "not an address".to_owned();
    let id = enqueue(&app, &email).await;

    let (status, attempts, error) = wait_for_row(&app, id, |row| row.0 != "PENDING").await;
    assert_eq!((status.as_str(), attempts), ("FAILED", 1));
    assert!(error.unwrap().contains("not an address"));
    assert_eq!(bodies(&app, id).await, (String::new(), String::new()));
}

#[tokio::test]
async fn an_email_enqueued_in_a_rolled_back_transaction_is_never_sent() {
    let smtp = FakeSmtp::start().await;
    let app = app_sending_to(&smtp).await;
    let now = app.state.now();
    {
        let mut conn = app.db().await;
        let rolled_back: Result<(), diesel::result::Error> = conn
            .transaction(async |conn| {
                mail::enqueue(conn, &simple_email("ghost@example.com"), now).await?;
                Err(diesel::result::Error::RollbackTransaction)
            })
            .await;
        assert!(rolled_back.is_err());
    }
    let committed = enqueue(&app, &simple_email("real@example.com")).await;

    let message = smtp.next_message().await;
    assert_eq!(message.to, ["real@example.com"]);
    wait_for_row(&app, committed, |row| row.0 == "SENT").await;
    smtp.assert_no_message_within(Duration::from_millis(1000)).await;
    let mut conn = app.db().await;
    let rows: i64 = email_outbox::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(rows, 1, "the rolled-back email left no row");
}

#[tokio::test]
async fn without_smtp_url_emails_are_logged_and_marked_sent() {
    let app = TestApp::spawn().await;
    let email = templates::reset_password(app.state.config(), "ada@example.com", "Ada", "token");
    let id = enqueue(&app, &email).await;
    let (status, attempts, error) = wait_for_row(&app, id, |row| row.0 != "PENDING").await;
    assert_eq!((status.as_str(), attempts, error), ("SENT", 1, None));
}

#[tokio::test]
async fn two_instances_deliver_each_email_exactly_once() {
    let smtp = FakeSmtp::start().await;
    let first = app_sending_to(&smtp).await;
    // Kept alive (not `_`) so its worker competes for the same rows.
    let _second = first.spawn_sibling().await;
    let recipients: Vec<String> = (0..25).map(|n| format!("user{n}@example.com")).collect();
    // Both instances poll the same outbox; where a row was written does not matter.
    for to in &recipients {
        enqueue(&first, &simple_email(to)).await;
    }

    let mut received = Vec::new();
    for _ in &recipients {
        let message = smtp.next_message().await;
        received.extend(message.to);
    }
    smtp.assert_no_message_within(Duration::from_millis(1000)).await;
    received.sort();
    let mut expected = recipients.clone();
    expected.sort();
    assert_eq!(received, expected);
}
