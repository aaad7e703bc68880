//! Invitations over HTTP, following the links of the emails a real (fake)
//! SMTP server receives: inviting, re-sending, revoking, accepting, the
//! plan's member limit, and signing up with an invitation, with
//! registration open and closed.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tollgate::{
    auth::{roles::OrgRole, users::Role},
    db::schema::{email_outbox, users},
};
use uuid::Uuid;

use crate::{
    harness::{
        GqlResponse, TestApp, TestAppOptions, create_user,
        people::{PASSWORD, REGISTER, SignedIn, register},
        smtp::{FakeSmtp, ReceivedMessage},
    },
    organizations::{add_member, audit_actions, create_org, field, personal_org},
};

const APP_URL: &str = "https://app.example.com";
const INVITE: &str = "mutation ($org: ID!, $email: String!, $role: OrgRole!) {
    inviteMember(organizationId: $org, email: $email, role: $role) {
    id email role createdAt expiresAt acceptedAt organization { id } invitedBy { id } } }";
const INVITE_DEFAULT_ROLE: &str = "mutation ($org: ID!, $email: String!) {
    inviteMember(organizationId: $org, email: $email) { id role } }";
const ACCEPT: &str = "mutation ($token: String!) { acceptInvitation(token: $token) {
    role organization { id name viewerRole } user { id emailVerified } } }";
const REVOKE: &str = "mutation ($id: ID!) { revokeInvitation(id: $id) }";
const PENDING: &str = "query ($id: ID!) { organization(id: $id) { invitations { id email role } } }";

async fn app_mailing_to(smtp: &FakeSmtp, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("SMTP_URL".to_owned(), format!("smtp://127.0.0.1:{}", smtp.port())),
        ("APP_URL".to_owned(), APP_URL.to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    TestApp::spawn_with(TestAppOptions {
        vars,
        ..Default::default()
    })
    .await
}

/// The token of the `APP_URL/accept-invitation?token=` link in the
/// plain-text part.
fn link_token(message: &ReceivedMessage) -> String {
    let text = message.part("text/plain").expect("a plain-text part").body;
    let prefix = format!("{APP_URL}/accept-invitation?token=");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"))
        + prefix.len();
    let token: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    percent_encoding::percent_decode_str(&token)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// The next invitation email to `to` (verification emails of sign-ups
/// are passed over); returns the message and its link's token.
async fn invitation_to(smtp: &FakeSmtp, to: &str) -> (ReceivedMessage, String) {
    loop {
        let message = smtp.next_message().await;
        let subject = message.header("Subject").unwrap_or_default();
        if message.to == [to] && subject.contains("invited you") {
            let token = link_token(&message);
            return (message, token);
        }
    }
}

async fn invite(app: &TestApp, who: &SignedIn, org: Uuid, email: &str, role: &str) -> GqlResponse {
    app.graphql_as(
        &who.access,
        INVITE,
        json!({ "org": org.to_string(), "email": email, "role": role }),
    )
    .await
}

async fn accept(app: &TestApp, who: &SignedIn, token: &str) -> GqlResponse {
    app.graphql_as(&who.access, ACCEPT, json!({ "token": token })).await
}

fn id_of(response: &GqlResponse) -> String {
    response.data()["inviteMember"]["id"].as_str().unwrap().to_owned()
}

async fn email_verified(app: &TestApp, user_id: Uuid) -> bool {
    users::table
        .find(user_id)
        .select(users::email_verified_at.is_not_null())
        .first(&mut app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_emailed_link_makes_the_invitee_a_member_with_the_invited_role() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;

    let invited = invite(&app, &ada, org, " Bob@Example.com ", "VIEWER").await;
    let invitation = &invited.data()["inviteMember"];
    assert_eq!(invitation["email"], "bob@example.com");
    assert_eq!(invitation["role"], "VIEWER");
    assert_eq!(invitation["acceptedAt"], Value::Null);
    assert_eq!(invitation["invitedBy"]["id"], ada.user_id.to_string());
    let created = chrono::DateTime::parse_from_rfc3339(invitation["createdAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(invitation["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::days(7));
    let pending = app
        .graphql_as(&ada.access, PENDING, json!({ "id": org.to_string() }))
        .await;
    assert_eq!(
        pending.data()["organization"]["invitations"][0]["email"],
        "bob@example.com"
    );

    let (message, token) = invitation_to(&smtp, "bob@example.com").await;
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("Ada Lovelace invited you to join Acme")
    );
    assert!(message.part("text/plain").unwrap().body.contains("7 days"));

    assert!(!email_verified(&app, bob.user_id).await);
    let accepted = accept(&app, &bob, &token).await;
    assert_eq!(
        accepted.data()["acceptInvitation"],
        json!({
            "role": "VIEWER",
            "organization": { "id": org.to_string(), "name": "Acme", "viewerRole": "VIEWER" },
            "user": { "id": bob.user_id.to_string(), "emailVerified": true },
        })
    );
    assert!(
        email_verified(&app, bob.user_id).await,
        "the token was sent to that address"
    );

    let again = accept(&app, &bob, &token).await;
    assert_eq!(again.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&again), Some("token"));
    let pending = app
        .graphql_as(&ada.access, PENDING, json!({ "id": org.to_string() }))
        .await;
    assert_eq!(pending.data()["organization"]["invitations"], json!([]));
    assert_eq!(
        audit_actions(&app, org).await,
        ["org.created", "member.invited", "member.joined"]
    );
}

#[tokio::test]
async fn accepting_keeps_the_session_and_unlocks_keys_and_organizations() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;
    let create_key = "mutation ($org: ID!) { createApiKey(input: { organizationId: $org, name: \"ci\" }) { secret } }";
    let create_org_query = "mutation { createOrganization(input: { name: \"Bob's\" }) { id } }";
    assert_eq!(
        app.graphql_as(&bob.access, create_org_query, json!({}))
            .await
            .error_code(),
        Some("FORBIDDEN")
    );

    invite(&app, &ada, org, "bob@example.com", "MEMBER").await.data();
    let (_, token) = invitation_to(&smtp, "bob@example.com").await;
    accept(&app, &bob, &token).await.data();

    app.graphql_as(&bob.access, "{ me { id } }", json!({})).await.data();
    app.graphql(
        "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
        json!({ "t": bob.refresh }),
    )
    .await
    .data();
    app.graphql_as(&bob.access, create_key, json!({ "org": org.to_string() }))
        .await
        .data();
    app.graphql_as(&bob.access, create_org_query, json!({})).await.data();
}

#[tokio::test]
async fn only_the_invited_address_can_use_a_live_token() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let eve = register(&app, "eve@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;

    invite(&app, &ada, org, "bob@example.com", "MEMBER").await.data();
    let (_, token) = invitation_to(&smtp, "bob@example.com").await;
    let stolen = accept(&app, &eve, &token).await;
    assert_eq!(stolen.error_code(), Some("NOT_FOUND"), "{}", stolen.body);
    let made_up = accept(&app, &bob, "not-a-real-token").await;
    assert_eq!(made_up.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&made_up), Some("token"));
    let anonymous = app.graphql(ACCEPT, json!({ "token": token })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));

    // Seven days later the link has expired (and the access tokens too:
    // both sign in afresh).
    app.clock
        .advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let expired = app
        .graphql_as(&app.token_for(bob.user_id).await, ACCEPT, json!({ "token": token }))
        .await;
    assert_eq!(expired.error_code(), Some("BAD_USER_INPUT"), "{}", expired.body);
    assert_eq!(field(&expired), Some("token"));
    let still_someone_elses = app
        .graphql_as(&app.token_for(eve.user_id).await, ACCEPT, json!({ "token": token }))
        .await;
    assert_eq!(still_someone_elses.error_code(), Some("NOT_FOUND"));
}

#[tokio::test]
async fn who_may_invite_whom() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let admin = register(&app, "admin@example.com").await;
    let member = register(&app, "member@example.com").await;
    let outsider = register(&app, "outsider@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;
    add_member(&app, org, admin.user_id, OrgRole::Admin).await;
    add_member(&app, org, member.user_id, OrgRole::Member).await;
    // Room for the invitations below.
    set_max_members(&app, org, 10).await;

    let by_member = invite(&app, &member, org, "x@example.com", "VIEWER").await;
    assert_eq!(by_member.error_code(), Some("FORBIDDEN"));
    let by_outsider = invite(&app, &outsider, org, "x@example.com", "VIEWER").await;
    assert_eq!(by_outsider.error_code(), Some("NOT_FOUND"));
    let as_owner = invite(&app, &ada, org, "x@example.com", "OWNER").await;
    assert_eq!(as_owner.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&as_owner), Some("role"));
    let bad_email = invite(&app, &ada, org, "not an email", "MEMBER").await;
    assert_eq!(field(&bad_email), Some("email"));
    let existing = invite(&app, &admin, org, "MEMBER@example.com", "VIEWER").await;
    assert_eq!(existing.error_code(), Some("CONFLICT"));

    let personal = personal_org(&app, ada.user_id).await;
    let into_personal = invite(&app, &ada, personal, "x@example.com", "MEMBER").await;
    assert_eq!(into_personal.error_code(), Some("FORBIDDEN"));

    // An ADMIN may invite another ADMIN; the default role is MEMBER.
    let admin_invite = invite(&app, &admin, org, "second-admin@example.com", "ADMIN").await;
    assert_eq!(admin_invite.data()["inviteMember"]["role"], "ADMIN");
    let default_role = app
        .graphql_as(
            &ada.access,
            INVITE_DEFAULT_ROLE,
            json!({ "org": org.to_string(), "email": "plain@example.com" }),
        )
        .await;
    assert_eq!(default_role.data()["inviteMember"]["role"], "MEMBER");
}

/// Gives the organization's plan a member limit (a private copy of the
/// free plan, so other organizations keep theirs).
async fn set_max_members(app: &TestApp, org: Uuid, max: i32) {
    diesel::sql_query(
        "WITH plan AS (
            INSERT INTO plans (key, name, price_cents, max_members, public)
            VALUES ('roomy-' || substr(md5(random()::text), 1, 8), 'Roomy', 0, $1, false)
            RETURNING id)
         UPDATE subscriptions SET plan_id = (SELECT id FROM plan) WHERE organization_id = $2",
    )
    .bind::<diesel::sql_types::Integer, _>(max)
    .bind::<diesel::sql_types::Uuid, _>(org)
    .execute(&mut app.db().await)
    .await
    .unwrap();
}

#[tokio::test]
async fn inviting_again_replaces_the_pending_invitation() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;

    invite(&app, &ada, org, "bob@example.com", "VIEWER").await.data();
    let (_, first) = invitation_to(&smtp, "bob@example.com").await;
    invite(&app, &ada, org, "bob@example.com", "ADMIN").await.data();
    let (_, second) = invitation_to(&smtp, "bob@example.com").await;
    assert_ne!(first, second);

    let pending = app
        .graphql_as(&ada.access, PENDING, json!({ "id": org.to_string() }))
        .await;
    let invitations = pending.data()["organization"]["invitations"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(invitations.len(), 1);
    assert_eq!(invitations[0]["role"], "ADMIN");

    let old_link = accept(&app, &bob, &first).await;
    assert_eq!(field(&old_link), Some("token"));
    let new_link = accept(&app, &bob, &second).await;
    assert_eq!(new_link.data()["acceptInvitation"]["role"], "ADMIN");
}

#[tokio::test]
async fn the_plan_member_limit_counts_pending_invitations() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;

    // Free plan: 3 members. Ada plus two pending invitations fill it.
    invite(&app, &ada, org, "bob@example.com", "MEMBER").await.data();
    invite(&app, &ada, org, "carol@example.com", "MEMBER").await.data();
    let full = invite(&app, &ada, org, "dave@example.com", "MEMBER").await;
    assert_eq!(full.error_code(), Some("CONFLICT"), "{}", full.body);
    let message = full.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Free") && message.contains('3'), "{message}");
    // Re-sending a pending invitation takes no new seat.
    invite(&app, &ada, org, "carol@example.com", "VIEWER").await.data();

    // Accepting turns a pending seat into a member: still full.
    let (_, token) = invitation_to(&smtp, "bob@example.com").await;
    accept(&app, &bob, &token).await.data();
    let still_full = invite(&app, &ada, org, "dave@example.com", "MEMBER").await;
    assert_eq!(still_full.error_code(), Some("CONFLICT"));

    // Revoking frees a seat.
    let pending = app
        .graphql_as(&ada.access, PENDING, json!({ "id": org.to_string() }))
        .await;
    let carol_invitation = pending.data()["organization"]["invitations"][0]["id"].clone();
    let revoked = app
        .graphql_as(&ada.access, REVOKE, json!({ "id": carol_invitation }))
        .await;
    assert_eq!(revoked.data()["revokeInvitation"], true);
    invite(&app, &ada, org, "dave@example.com", "MEMBER").await.data();
}

#[tokio::test]
async fn revoking_is_for_admins_of_the_invitations_organization() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let viewer = register(&app, "viewer@example.com").await;
    let other = register(&app, "other@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;
    add_member(&app, org, viewer.user_id, OrgRole::Viewer).await;
    create_org(&app, &other.access, "Other").await;

    let invited = invite(&app, &ada, org, "bob@example.com", "MEMBER").await;
    let id = id_of(&invited);
    let (_, token) = invitation_to(&smtp, "bob@example.com").await;

    let by_other_admin = app.graphql_as(&other.access, REVOKE, json!({ "id": id })).await;
    let unknown = app
        .graphql_as(&other.access, REVOKE, json!({ "id": Uuid::now_v7().to_string() }))
        .await;
    assert_eq!(by_other_admin.error_code(), Some("NOT_FOUND"));
    assert_eq!(
        by_other_admin.body["errors"][0]["message"],
        unknown.body["errors"][0]["message"]
    );
    let by_viewer = app.graphql_as(&viewer.access, REVOKE, json!({ "id": id })).await;
    assert_eq!(by_viewer.error_code(), Some("FORBIDDEN"));

    let revoked = app.graphql_as(&ada.access, REVOKE, json!({ "id": id })).await;
    assert_eq!(revoked.data()["revokeInvitation"], true);
    let twice = app.graphql_as(&ada.access, REVOKE, json!({ "id": id })).await;
    assert_eq!(twice.data()["revokeInvitation"], true, "already done");
    let dead_link = accept(&app, &bob, &token).await;
    assert_eq!(field(&dead_link), Some("token"));
    let actions = audit_actions(&app, org).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "invitation.revoked").count(),
        1,
        "{actions:?}"
    );

    // An accepted invitation cannot be revoked: the person is a member.
    invite(&app, &ada, org, "bob@example.com", "MEMBER").await.data();
    let (_, token) = invitation_to(&smtp, "bob@example.com").await;
    let pending = app
        .graphql_as(&ada.access, PENDING, json!({ "id": org.to_string() }))
        .await;
    let id = pending.data()["organization"]["invitations"][0]["id"].clone();
    accept(&app, &bob, &token).await.data();
    let too_late = app.graphql_as(&ada.access, REVOKE, json!({ "id": id })).await;
    assert_eq!(too_late.error_code(), Some("CONFLICT"));
}

#[tokio::test]
async fn invitation_emails_to_one_address_are_rate_limited() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;
    for _ in 0..5 {
        invite(&app, &ada, org, "bob@example.com", "MEMBER").await.data();
    }
    let limited = invite(&app, &ada, org, "bob@example.com", "MEMBER").await;
    assert_eq!(limited.error_code(), Some("RATE_LIMITED"), "{}", limited.body);
    let retry_after = limited.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap();
    assert!((1..=3600).contains(&retry_after));
    // The refused attempt changed nothing: the last link still works.
    let pending = app
        .graphql_as(&ada.access, PENDING, json!({ "id": org.to_string() }))
        .await;
    assert_eq!(
        pending.data()["organization"]["invitations"].as_array().unwrap().len(),
        1
    );
    let other_address = invite(&app, &ada, org, "carol@example.com", "MEMBER").await;
    other_address.data();
}

/// `register` with an invitation token.
async fn register_invited(app: &TestApp, email: &str, token: Option<&str>) -> GqlResponse {
    app.graphql(
        REGISTER,
        json!({ "input": { "email": email, "password": PASSWORD, "name": "Dave", "invitationToken": token } }),
    )
    .await
}

/// Verification emails queued for an address.
async fn verification_emails(app: &TestApp, to: &str) -> i64 {
    email_outbox::table
        .filter(email_outbox::to_address.eq(to))
        .filter(email_outbox::kind.eq("verify_email"))
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_up_with_an_invitation_verifies_the_email_and_joins_at_once() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let ada = register(&app, "ada@example.com").await;
    let org = create_org(&app, &ada.access, "Acme").await;
    invite(&app, &ada, org, "dave@example.com", "MEMBER").await.data();
    let (_, token) = invitation_to(&smtp, "dave@example.com").await;

    let registered = register_invited(&app, "Dave@example.com", Some(&token)).await;
    let payload = &registered.data()["register"];
    assert_eq!(payload["user"]["emailVerified"], true);
    let dave = SignedIn::from(payload);
    let mine = app
        .graphql_as(
            &dave.access,
            "{ me { memberships { role organization { id } } } }",
            json!({}),
        )
        .await;
    assert!(
        mine.data()["me"]["memberships"]
            .as_array()
            .unwrap()
            .contains(&json!({ "role": "MEMBER", "organization": { "id": org.to_string() } }))
    );
    assert_eq!(verification_emails(&app, "dave@example.com").await, 0);
    let spent = accept(&app, &dave, &token).await;
    assert_eq!(field(&spent), Some("token"));
    assert!(audit_actions(&app, org).await.contains(&"member.joined".to_owned()));

    // Without a token, an invited person signs up as anyone does and
    // accepts afterwards.
    invite(&app, &ada, org, "erin@example.com", "VIEWER").await.data();
    let (_, token) = invitation_to(&smtp, "erin@example.com").await;
    let erin = register(&app, "erin@example.com").await;
    let accepted = accept(&app, &erin, &token).await;
    assert_eq!(accepted.data()["acceptInvitation"]["role"], "VIEWER");
}

#[tokio::test]
async fn closed_registration_admits_only_the_invited_address() {
    let smtp = FakeSmtp::start().await;
    let app = app_mailing_to(&smtp, &[("REGISTRATION_OPEN", "false")]).await;
    let inviter = create_user(&app, "ada@example.com", Role::User).await;
    let inviter = SignedIn {
        access: app.token_for(inviter).await,
        refresh: String::new(),
        user_id: inviter,
    };
    let org = create_org(&app, &inviter.access, "Acme").await;
    invite(&app, &inviter, org, "dave@example.com", "VIEWER").await.data();
    let (_, token) = invitation_to(&smtp, "dave@example.com").await;

    let no_token = register_invited(&app, "dave@example.com", None).await;
    assert_eq!(no_token.error_code(), Some("FORBIDDEN"));
    let made_up = register_invited(&app, "dave@example.com", Some("made-up")).await;
    assert_eq!(made_up.error_code(), Some("BAD_USER_INPUT"));
    assert_eq!(field(&made_up), Some("invitationToken"));
    let other_address = register_invited(&app, "mallory@example.com", Some(&token)).await;
    assert_eq!(field(&other_address), Some("invitationToken"));

    let registered = register_invited(&app, "dave@example.com", Some(&token)).await;
    let payload = &registered.data()["register"];
    assert_eq!(payload["user"]["emailVerified"], true);
    let dave = SignedIn::from(payload);
    let read = app
        .graphql_as(
            &dave.access,
            "query ($id: ID!) { organization(id: $id) { viewerRole } }",
            json!({ "id": org.to_string() }),
        )
        .await;
    assert_eq!(read.data()["organization"]["viewerRole"], "VIEWER");

    // The token is spent: it opens no second account.
    let reused = register_invited(&app, "dave2@example.com", Some(&token)).await;
    assert_eq!(field(&reused), Some("invitationToken"));
}
