//! Lists of members answered in one pass (`crate::plain` in the schema
//! crate) give what the executor gives field by field, on real rows: the
//! same members, in the same order, with the same values.

use serde_json::{Value, json};
use tollgate::auth::roles::OrgRole;

use crate::{
    harness::{TestApp, people::register},
    organizations::{add_member, create_org},
    usage::admin_token,
};

/// Every plain field of a member and of its user, under aliases and
/// fragments, in both of a page's lists (`edges` and `nodes`). `EXTRA` is
/// where a field the plain pass does not answer goes.
const PAGE: &str = "query { organizations(first: 20) {
    edges { node { slug members { role joinedAt tokenLimit __typename who: user { id name email }
        ...Person EXTRA } } }
    nodes { members { role user { name } EXTRA } } } }
fragment Person on Membership { user { avatarUrl role emailVerified suspended createdAt lastLoginAt __typename } }";

/// `tokensUsed`, which sends the whole list through the executor, taken
/// out of an answer again.
fn without_tokens_used(mut answer: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(object) => {
                object.remove("tokensUsed");
                object.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut answer);
    answer
}

#[tokio::test]
async fn a_page_of_members_answers_the_same_in_one_pass_as_through_the_executor() {
    let app = TestApp::spawn().await;
    let owner = register(&app, "owner@example.com").await;
    let people = [
        register(&app, "ada@example.com").await,
        register(&app, "grace@example.com").await,
    ];
    let admin = admin_token(&app).await;
    for (n, name) in ["Analytical", "Engines"].into_iter().enumerate() {
        let organization = create_org(&app, &owner.access, name).await;
        for (person, role) in people.iter().take(n + 1).zip([OrgRole::Admin, OrgRole::Member]) {
            add_member(&app, organization, person.user_id, role).await;
        }
        let limited = app
            .graphql_as(
                &owner.access,
                "mutation ($org: ID!, $user: ID!) { updateMember(organizationId: $org, userId: $user, tokenLimit: 5000) { tokenLimit } }",
                json!({ "org": organization, "user": people[0].user_id }),
            )
            .await;
        assert_eq!(limited.data()["updateMember"]["tokenLimit"], 5000, "{}", limited.body);
    }

    let plain = app.graphql_as(&admin, &PAGE.replace("EXTRA", ""), json!({})).await;
    let executor = app
        .graphql_as(&admin, &PAGE.replace("EXTRA", "tokensUsed"), json!({}))
        .await;
    assert!(plain.body["errors"].is_null(), "{}", plain.body);
    assert!(executor.body["errors"].is_null(), "{}", executor.body);
    assert_eq!(plain.body["data"], without_tokens_used(executor.body["data"].clone()));

    // And the answer is the page's: each team's owner and members, oldest
    // first, with their budgets.
    let edges = plain.data()["organizations"]["edges"].as_array().unwrap().clone();
    let team = edges
        .iter()
        .find(|edge| edge["node"]["slug"] == "engines")
        .unwrap_or_else(|| panic!("no engines in {}", plain.body));
    let members = &team["node"]["members"];
    let roles: Vec<_> = members.as_array().unwrap().iter().map(|m| m["role"].clone()).collect();
    assert_eq!(roles, ["OWNER", "ADMIN", "MEMBER"]);
    assert_eq!(members[1]["who"]["email"], "ada@example.com");
    assert_eq!(members[1]["tokenLimit"], 5000);
    assert_eq!(members[1]["__typename"], "Membership");
    assert_eq!(members[1]["user"]["__typename"], "User");
    assert_eq!(members[2]["who"]["email"], "grace@example.com");
    assert_eq!(members[2]["tokenLimit"], Value::Null);
}
