//! Profiles, picture uploads over the GraphQL multipart request spec, the
//! picture endpoint, and account deletion, as a client does them.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::{
    StatusCode,
    multipart::{Form, Part},
};
use serde_json::{Value, json};
use tollgate::{
    auth::roles::OrgRole,
    db::schema::{audit_log, avatars, memberships, organizations, users},
    orgs::{
        model as orgs,
        model::{MembershipRow, NewOrganization},
    },
};
use uuid::Uuid;

use crate::harness::{
    GqlResponse, TestApp,
    people::{PASSWORD, register},
};

const UPDATE: &str = "mutation ($input: UpdateProfileInput!) { updateProfile(input: $input) {
    id name avatarUrl preferences } }";
const UPLOAD: &str = "mutation ($file: Upload!) { uploadAvatar(file: $file) { id avatarUrl } }";
const DELETE: &str = "mutation ($password: String!) { deleteAccount(password: $password) }";
const ME: &str = "{ me { id name avatarUrl preferences } }";

/// A 1x1 transparent PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\
    \0\0\0\x0aIDATx\x9cc\0\x01\0\0\x05\0\x01\x0d\x0a\x2d\xb4\0\0\0\0IEND\xae\x42\x60\x82";

const MIB: usize = 1024 * 1024;

async fn update(app: &TestApp, token: &str, input: Value) -> GqlResponse {
    app.graphql_as(token, UPDATE, json!({ "input": input })).await
}

fn field(response: &GqlResponse) -> Option<&str> {
    response.body["errors"][0]["extensions"]["field"].as_str()
}

/// `uploadAvatar` as the GraphQL multipart request spec has clients send
/// it: `operations` with the file variable null, `map` pointing part `0`
/// at it, then the file.
async fn upload(app: &TestApp, token: &str, bytes: Vec<u8>, file_name: &str, mime: &str) -> GqlResponse {
    let operations = json!({ "query": UPLOAD, "variables": { "file": null } });
    let map = json!({ "0": ["variables.file"] });
    let file = Part::bytes(bytes)
        .file_name(file_name.to_owned())
        .mime_str(mime)
        .expect("a MIME type");
    let form = Form::new()
        .text("operations", operations.to_string())
        .text("map", map.to_string())
        .part("0", file);
    let response = app
        .http()
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("POST /graphql");
    GqlResponse::from(response).await
}

/// A file that starts like a PNG (signature and IHDR), `size` bytes long.
fn png_headed(size: usize) -> Vec<u8> {
    let mut bytes = PNG[..33].to_vec();
    bytes.resize(size, 0);
    bytes
}

#[tokio::test]
async fn update_profile_round_trips_and_refuses_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let preferences = json!({ "theme": "dark", "editor": { "tabSize": 2, "wrap": true }, "pinned": ["a", "b"] });
    let response = update(
        &app,
        &ada.access,
        json!({ "name": "  Countess of Lovelace ", "avatarUrl": "https://cdn.example.com/ada.png", "preferences": preferences }),
    )
    .await;
    let expected = json!({
        "id": ada.user_id.to_string(),
        "name": "Countess of Lovelace",
        "avatarUrl": "https://cdn.example.com/ada.png",
        "preferences": preferences,
    });
    assert_eq!(response.data()["updateProfile"], expected);
    assert_eq!(app.graphql_as(&ada.access, ME, json!({})).await.data()["me"], expected);

    // Omitted fields keep their values.
    let response = update(&app, &ada.access, json!({ "name": "Ada" })).await;
    assert_eq!(
        response.data()["updateProfile"]["avatarUrl"],
        "https://cdn.example.com/ada.png"
    );
    assert_eq!(response.data()["updateProfile"]["preferences"], preferences);

    let cases = [
        (
            json!({ "preferences": { "blob": "x".repeat(16 * 1024) } }),
            "preferences",
        ),
        (json!({ "preferences": [1, 2, 3] }), "preferences"),
        (json!({ "preferences": "dark" }), "preferences"),
        (json!({ "avatarUrl": "javascript:alert(1)" }), "avatarUrl"),
        (json!({ "avatarUrl": "ftp://example.com/a.png" }), "avatarUrl"),
        (json!({ "avatarUrl": "not a url" }), "avatarUrl"),
        (json!({ "name": "   " }), "name"),
        (json!({ "name": "" }), "name"),
        // Nothing is changed when one field of several is wrong.
        (
            json!({ "name": "Changed", "avatarUrl": "mailto:ada@example.com" }),
            "avatarUrl",
        ),
    ];
    for (input, expected_field) in cases {
        let response = update(&app, &ada.access, input.clone()).await;
        assert_eq!(
            response.error_code(),
            Some("BAD_USER_INPUT"),
            "{input}: {}",
            response.body
        );
        assert_eq!(field(&response), Some(expected_field), "{input}");
    }
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["name"], "Ada");
    assert_eq!(me.data()["me"]["avatarUrl"], "https://cdn.example.com/ada.png");
    assert_eq!(me.data()["me"]["preferences"], preferences);

    // An empty string or null removes the picture.
    let response = update(&app, &ada.access, json!({ "avatarUrl": "" })).await;
    assert_eq!(response.data()["updateProfile"]["avatarUrl"], Value::Null);
    update(&app, &ada.access, json!({ "avatarUrl": "http://example.com/a.png" }))
        .await
        .data();
    let response = update(&app, &ada.access, json!({ "avatarUrl": null })).await;
    assert_eq!(response.data()["updateProfile"]["avatarUrl"], Value::Null);

    let anonymous = app.graphql(UPDATE, json!({ "input": { "name": "Eve" } })).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn an_uploaded_png_becomes_the_avatar_and_is_served_with_caching_headers() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    assert_eq!(PNG.len(), 67);
    let response = upload(&app, &ada.access, PNG.to_vec(), "me.png", "image/png").await;
    let url = response.data()["uploadAvatar"]["avatarUrl"]
        .as_str()
        .expect("avatarUrl")
        .to_owned();
    assert!(url.starts_with(&app.url("/avatars/")), "{url}");
    assert_eq!(
        app.graphql_as(&ada.access, ME, json!({})).await.data()["me"]["avatarUrl"],
        url
    );

    let served = app.http().get(&url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let header = |name: &str| {
        served
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert_eq!(
        header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("content-security-policy").as_deref(), Some("default-src 'none'"));
    let etag = header("etag").expect("an ETag");
    assert_eq!(served.bytes().await.unwrap().as_ref(), PNG);

    let revalidated = app
        .http()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    // The type comes from the bytes, not from what the client says.
    let response = upload(&app, &ada.access, PNG.to_vec(), "photo.bin", "application/octet-stream").await;
    let second = response.data()["uploadAvatar"]["avatarUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, url, "a new upload gets a new URL");
    let served = app.http().get(&second).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "image/png");
    // The previous picture is gone, and only one is stored.
    assert_eq!(
        app.http().get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let mut conn = app.db().await;
    let stored: i64 = avatars::table
        .filter(avatars::user_id.eq(ada.user_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // Pointing the profile elsewhere deletes the stored picture.
    update(
        &app,
        &ada.access,
        json!({ "avatarUrl": "https://cdn.example.com/ada.png" }),
    )
    .await
    .data();
    assert_eq!(
        app.http().get(&second).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    for path in ["/avatars/not-a-uuid".to_owned(), format!("/avatars/{}", Uuid::new_v4())] {
        let response = app.http().get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // Anonymous, so with the header that makes browsers ask first.
    let anonymous = app
        .http()
        .post(app.url("/graphql"))
        .header("apollo-require-preflight", "true")
        .multipart(
            Form::new()
                .text(
                    "operations",
                    json!({ "query": UPLOAD, "variables": { "file": null } }).to_string(),
                )
                .text("map", json!({ "0": ["variables.file"] }).to_string())
                .part("0", Part::bytes(PNG.to_vec()).file_name("me.png")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(GqlResponse::from(anonymous).await.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn a_picture_of_exactly_two_mebibytes_is_accepted() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    const IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";
    let mut bytes = png_headed(2 * MIB - IEND.len());
    bytes.extend_from_slice(IEND);
    assert_eq!(bytes.len(), 2 * MIB);
    let response = upload(&app, &ada.access, bytes, "exact.png", "image/png").await;
    assert!(
        response.data()["uploadAvatar"]["avatarUrl"].is_string(),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn files_that_are_not_pictures_or_too_large_are_refused() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;

    let text = b"just some text, whatever the name says\n".to_vec();
    let response = upload(&app, &ada.access, text, "picture.png", "image/png").await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
    assert_eq!(field(&response), Some("file"));

    let response = upload(&app, &ada.access, Vec::new(), "empty.png", "image/png").await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
    assert_eq!(field(&response), Some("file"));

    // Over the upload limit the multipart parser stops reading: the client
    // gets 413 without a GraphQL body, as for any body over its limit.
    let response = upload(&app, &ada.access, png_headed(2 * MIB + 1), "big.png", "image/png").await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", response.body);

    // A plain JSON request naming a file it did not send, or a forged
    // marker (async-graphql itself would panic on it): refused, and the
    // connection answers.
    for forged in [
        json!({ "file": "#__graphql_file__:0" }),
        json!({ "file": "#__graphql_file__:x" }),
    ] {
        let response = app.graphql_as(&ada.access, UPLOAD, forged).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        assert_eq!(field(&response), Some("file"));
    }
    let literal = "mutation { uploadAvatar(file: \"#__graphql_file__:x\") { id } }";
    let response = app.graphql_as(&ada.access, literal, json!({})).await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);

    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["avatarUrl"], Value::Null);
    let mut conn = app.db().await;
    let stored: i64 = avatars::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn deleting_an_account_leaves_a_tombstone_and_frees_the_email() {
    let app = TestApp::spawn().await;
    let ada = register(&app, "ada@example.com").await;
    let bob = register(&app, "bob@example.com").await;
    let now = app.state.now();
    let bob_personal: Uuid = {
        let mut conn = app.db().await;
        organizations::table
            .filter(organizations::personal_user_id.eq(bob.user_id))
            .select(organizations::id)
            .first(&mut conn)
            .await
            .unwrap()
    };
    // Ada owns a team Bob belongs to, and belongs to Bob's organization
    // (invitations are not built yet: straight into the database).
    let team = Uuid::now_v7();
    {
        let mut conn = app.db().await;
        orgs::insert(
            &mut conn,
            &NewOrganization {
                id: team,
                name: "Analytical Engines",
                slug: "analytical-engines",
                personal_user_id: None,
                created_at: now,
                updated_at: now,
            },
        )
        .await
        .unwrap();
        for (organization_id, user_id, role) in [
            (team, ada.user_id, OrgRole::Owner),
            (team, bob.user_id, OrgRole::Member),
            (bob_personal, ada.user_id, OrgRole::Member),
        ] {
            let membership = MembershipRow {
                organization_id,
                user_id,
                role,
                token_limit: None,
                created_at: now,
                updated_at: now,
            };
            orgs::insert_membership(&mut conn, &membership).await.unwrap();
        }
    }
    let uploaded = upload(&app, &ada.access, PNG.to_vec(), "me.png", "image/png").await;
    let avatar_url = uploaded.data()["uploadAvatar"]["avatarUrl"]
        .as_str()
        .unwrap()
        .to_owned();

    let wrong = app
        .graphql_as(&ada.access, DELETE, json!({ "password": "not my password" }))
        .await;
    assert_eq!(wrong.error_code(), Some("BAD_USER_INPUT"), "{}", wrong.body);
    assert_eq!(field(&wrong), Some("password"));

    let shared = app
        .graphql_as(&ada.access, DELETE, json!({ "password": PASSWORD }))
        .await;
    assert_eq!(shared.error_code(), Some("CONFLICT"), "{}", shared.body);

    // Bob leaves the team; now Ada owns only organizations without others.
    {
        let mut conn = app.db().await;
        diesel::delete(
            memberships::table
                .filter(memberships::organization_id.eq(team))
                .filter(memberships::user_id.eq(bob.user_id)),
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let deleted = app
        .graphql_as(&ada.access, DELETE, json!({ "password": PASSWORD }))
        .await;
    assert_eq!(deleted.data()["deleteAccount"], true);

    // At once: the access token, the refresh token and the password are refused.
    let me = app.graphql_as(&ada.access, ME, json!({})).await;
    assert_eq!(me.error_code(), Some("UNAUTHENTICATED"), "{}", me.body);
    let refreshed = app
        .graphql(
            "mutation ($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            json!({ "t": ada.refresh }),
        )
        .await;
    assert_eq!(refreshed.error_code(), Some("UNAUTHENTICATED"));
    let login = app
        .graphql(
            "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }",
            json!({ "input": { "email": "ada@example.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(login.error_code(), Some("UNAUTHENTICATED"), "{}", login.body);
    assert_eq!(
        app.http().get(&avatar_url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // The row stays as a tombstone without personal data.
    let mut conn = app.db().await;
    let tombstone: (String, String, Option<String>, Option<String>, Value, bool) = users::table
        .find(ada.user_id)
        .select((
            users::email,
            users::name,
            users::password_hash,
            users::avatar_url,
            users::preferences,
            users::deleted_at.is_not_null(),
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        tombstone,
        (
            format!("deleted-{}@deleted.invalid", ada.user_id),
            "Deleted user".to_owned(),
            None,
            None,
            json!({}),
            true
        )
    );
    // Her organizations are gone, Bob's stays without her.
    let organizations_left: Vec<Uuid> = organizations::table
        .select(organizations::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(organizations_left, [bob_personal]);
    let her_memberships: i64 = memberships::table
        .filter(memberships::user_id.eq(ada.user_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(her_memberships, 0);
    let audited: i64 = audit_log::table
        .filter(audit_log::action.eq("user.deleted"))
        .filter(audit_log::actor_id.eq(ada.user_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited, 1);
    drop(conn);

    // Bob is unaffected, and the email can sign up again as a new person.
    assert_eq!(
        app.graphql_as(&bob.access, ME, json!({})).await.data()["me"]["id"],
        bob.user_id.to_string()
    );
    let again = register(&app, "ada@example.com").await;
    assert_ne!(again.user_id, ada.user_id);
    let me = app.graphql_as(&again.access, ME, json!({})).await;
    assert_eq!(me.data()["me"]["name"], "Ada Lovelace");
}
