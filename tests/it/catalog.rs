//! The public read-only queries: plans, models, clientConfig and me.

use serde_json::json;
use tollgate::auth::users::Role;

use crate::harness::{TestApp, create_user};

#[tokio::test]
async fn anyone_sees_the_seeded_plans_models_and_client_config() {
    let app = TestApp::spawn().await;
    let response = app
        .graphql(
            "{ plans { key name priceCents currency interval monthlyTokenLimit public features }
               models { id provider inputUsdPerMillionTokens cachedInputUsdPerMillionTokens outputUsdPerMillionTokens enabled }
               clientConfig { graphqlUrl subscriptionsUrl playgroundUrl version registrationOpen billingEnabled } }",
            json!({}),
        )
        .await;
    let data = response.data();

    let keys: Vec<&str> = data["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["free", "pro", "enterprise"]);
    assert_eq!(data["plans"][0]["priceCents"], 0);
    assert_eq!(data["plans"][1]["interval"], "MONTH");
    assert!(
        data["plans"][1]["monthlyTokenLimit"].as_i64().unwrap()
            > data["plans"][0]["monthlyTokenLimit"].as_i64().unwrap()
    );

    let models = data["models"].as_array().unwrap();
    assert!(models.len() >= 12, "a dozen models at least, got {}", models.len());
    for provider in ["openai", "anthropic", "google", "meta"] {
        assert!(models.iter().any(|m| m["provider"] == provider), "no {provider} model");
    }
    let gpt4o = models
        .iter()
        .find(|m| m["id"] == "gpt-4o")
        .expect("gpt-4o is in the catalog");
    assert_eq!(gpt4o["inputUsdPerMillionTokens"], 2.5);
    assert_eq!(gpt4o["cachedInputUsdPerMillionTokens"], 1.25);
    assert_eq!(gpt4o["outputUsdPerMillionTokens"], 10.0);

    let config = &data["clientConfig"];
    assert_eq!(config["graphqlUrl"], app.url("/graphql"));
    assert_eq!(config["subscriptionsUrl"], app.ws_url());
    assert_eq!(config["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(config["billingEnabled"], false);
}

#[tokio::test]
async fn private_plans_are_shown_to_admins_only() {
    let app = TestApp::spawn().await;
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db().await;
        diesel::sql_query("INSERT INTO plans (key, name, price_cents, public) VALUES ('partner', 'Partner', 0, false)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let admin = create_user(&app, "root@example.com", Role::Admin).await;
    let user = create_user(&app, "ada@example.com", Role::User).await;
    let keys = |r: &crate::harness::GqlResponse| -> Vec<String> {
        r.data()["plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let query = "{ plans { key } }";
    assert!(!keys(&app.graphql(query, json!({})).await).contains(&"partner".to_owned()));
    assert!(!keys(&app.graphql_as(&app.token_for(user).await, query, json!({})).await).contains(&"partner".to_owned()));
    assert!(keys(&app.graphql_as(&app.token_for(admin).await, query, json!({})).await).contains(&"partner".to_owned()));
}

#[tokio::test]
async fn me_is_null_when_anonymous_and_the_caller_when_signed_in() {
    let app = TestApp::spawn().await;
    let anonymous = app.graphql("{ me { id } }", json!({})).await;
    assert_eq!(anonymous.data()["me"], json!(null));

    let id = create_user(&app, "Ada@Example.com", Role::User).await;
    let me = app
        .graphql_as(
            &app.token_for(id).await,
            "{ me { id email role emailVerified suspended preferences createdAt lastLoginAt } }",
            json!({}),
        )
        .await;
    let me = &me.data()["me"];
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["role"], "USER");
    assert_eq!(me["emailVerified"], false);
    assert_eq!(me["preferences"], json!({}));
    assert_eq!(me["lastLoginAt"], json!(null));
    let created = me["createdAt"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
}

#[tokio::test]
async fn bad_or_expired_credentials_are_unauthenticated_never_anonymous() {
    let app = TestApp::spawn().await;
    let id = create_user(&app, "ada@example.com", Role::User).await;
    let token = app.token_for(id).await;

    for bad in ["not-a-token", "Basic dXNlcjpwYXNz"] {
        let response = app
            .http()
            .post(app.url("/graphql"))
            .header("authorization", bad)
            .json(&json!({ "query": "{ plans { key } }" }))
            .send()
            .await
            .unwrap();
        let response = crate::harness::GqlResponse::from(response).await;
        assert_eq!(
            response.error_code(),
            Some("UNAUTHENTICATED"),
            "{bad}: {}",
            response.body
        );
        assert_eq!(response.body["data"], json!(null));
    }

    app.clock.advance(chrono::Duration::seconds(901));
    let expired = app.graphql_as(&token, "{ me { id } }", json!({})).await;
    assert_eq!(expired.error_code(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn a_genuine_token_without_a_live_session_is_refused() {
    let app = TestApp::spawn().await;
    let id = create_user(&app, "ada@example.com", Role::User).await;
    let orphan = app
        .state
        .access_tokens()
        .issue(id, uuid::Uuid::new_v4(), app.state.now())
        .unwrap();
    let response = app.graphql_as(&orphan, "{ me { id } }", json!({})).await;
    assert_eq!(response.error_code(), Some("UNAUTHENTICATED"));
}
