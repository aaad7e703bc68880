//! Seeding through the public interfaces only, as an operator would: the
//! admin comes from the CLI (see `server.rs`), everything else from
//! GraphQL over HTTP signed in as that admin.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Client;
use serde_json::{Value, json};

use super::server::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// The plan the benchmark's organizations are on: no token limit, no
/// daily request limit, no requestsPerMinute, no key limit.
pub const PLAN_KEY: &str = "bench-unlimited";
/// The catalog model the OpenAI workloads call, routed to the fake.
pub const OPENAI_MODEL: &str = "gpt-4o-mini";
/// The catalog model the Anthropic workloads call, routed to the fake.
pub const ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// The providers pointing at the fake upstream.
pub const OPENAI_PROVIDER: &str = "fake";
/// See [`OPENAI_PROVIDER`].
pub const ANTHROPIC_PROVIDER: &str = "fake-anthropic";

/// GraphQL over HTTP as one signed-in user.
pub struct Graphql {
    client: Client,
    url: String,
    token: Option<String>,
}

impl Graphql {
    /// A client of the server at `base`, not signed in.
    pub fn new(base: &str) -> Result<Self> {
        Ok(Self {
            client: Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?,
            url: format!("{base}/graphql"),
            token: None,
        })
    }

    /// Runs `query` and returns its `data`; GraphQL errors are errors.
    pub async fn run(&self, query: &str, variables: Value) -> Result<Value> {
        let mut request = self
            .client
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.context("calling /graphql")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("reading the /graphql answer (HTTP {status})"))?;
        if let Some(errors) = body["errors"].as_array().filter(|errors| !errors.is_empty()) {
            let messages: Vec<&str> = errors.iter().filter_map(|error| error["message"].as_str()).collect();
            bail!("{}", messages.join("; "));
        }
        Ok(body["data"].clone())
    }

    /// Signs in as the benchmark's admin.
    pub async fn login_as_admin(&mut self) -> Result<()> {
        let data = self
            .run(
                "mutation ($input: LoginInput!) { login(input: $input) { accessToken } }",
                json!({ "input": { "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD } }),
            )
            .await?;
        let token = text(&data["login"]["accessToken"])?;
        self.token = Some(token);
        Ok(())
    }
}

/// What the workloads call with.
pub struct Seeded {
    /// One `LLM` key per organization, in organization order.
    pub keys: Vec<String>,
}

/// An organization on the benchmark's plan, with one key.
pub struct Organization {
    /// Its id.
    pub id: String,
    /// Its key.
    pub key: Key,
}

/// An API key as `createApiKey` gave it.
pub struct Key {
    /// The key's id.
    pub id: String,
    /// The secret a caller presents.
    pub secret: String,
}

/// A string of an answer, or an error saying what came instead.
pub fn text(value: &Value) -> Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("expected a string, got {value}"))
}

/// Creates (or updates) the plan the benchmark's organizations are on.
pub async fn plan(api: &Graphql) -> Result<()> {
    api.run(
        "mutation ($input: PlanInput!) { upsertPlan(input: $input) { key } }",
        json!({ "input": {
            "key": PLAN_KEY,
            "name": "Benchmark (no limits)",
            "description": "Created by the benchmark: no token, request or key limits.",
            "priceCents": 0,
            "public": false
        } }),
    )
    .await?;
    Ok(())
}

/// Creates the plan, `organizations` organizations on it and an `LLM` key
/// for each. `run_id` keeps names unique in a database used before.
pub async fn organizations(api: &Graphql, organizations: usize, run_id: &str) -> Result<Seeded> {
    plan(api).await?;
    let mut keys = Vec::with_capacity(organizations);
    for index in 0..organizations {
        let organization = organization(api, &format!("Bench {run_id} #{index}"), &["LLM"]).await?;
        keys.push(organization.key.secret);
    }
    Ok(Seeded { keys })
}

/// An organization named `name` on the plan (created before, by
/// [`plan`]), with one key named "bench" with `scopes`.
pub async fn organization(api: &Graphql, name: &str, scopes: &[&str]) -> Result<Organization> {
    let data = api
        .run(
            "mutation ($input: CreateOrganizationInput!) { createOrganization(input: $input) { id } }",
            json!({ "input": { "name": name } }),
        )
        .await?;
    let id = text(&data["createOrganization"]["id"])?;
    api.run(
        "mutation ($id: ID!, $plan: String!) { setOrganizationPlan(organizationId: $id, planKey: $plan) { __typename } }",
        json!({ "id": id, "plan": PLAN_KEY }),
    )
    .await?;
    let key = create_key(api, &id, "bench", scopes).await?;
    Ok(Organization { id, key })
}

/// A key of `organization` named `name` with `scopes`.
pub async fn create_key(api: &Graphql, organization: &str, name: &str, scopes: &[&str]) -> Result<Key> {
    let data = api
        .run(
            "mutation ($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }",
            json!({ "input": { "organizationId": organization, "name": name, "scopes": scopes } }),
        )
        .await?;
    Ok(Key {
        id: text(&data["createApiKey"]["apiKey"]["id"])?,
        secret: text(&data["createApiKey"]["secret"])?,
    })
}

/// The providers pointing at the fake upstream, and the two catalog
/// models routed to them (their prices and names kept as they are).
pub async fn gateway_routes(api: &Graphql, openai_base: &str, anthropic_base: &str) -> Result<()> {
    let providers = [
        (OPENAI_PROVIDER, "OPENAI", openai_base),
        (ANTHROPIC_PROVIDER, "ANTHROPIC", anthropic_base),
    ];
    for (key, kind, base_url) in providers {
        api.run(
            "mutation ($input: ProviderInput!) { upsertProvider(input: $input) { key } }",
            json!({ "input": {
                "key": key,
                "name": format!("Benchmark fake ({kind})"),
                "kind": kind,
                "baseUrl": base_url,
                "apiKey": "sk-fake-benchmark-key"
            } }),
        )
        .await?;
    }
    let data = api
        .run(
            "{ models { id aliases provider displayName contextWindow inputUsdPerMillionTokens \
             cachedInputUsdPerMillionTokens outputUsdPerMillionTokens } }",
            json!({}),
        )
        .await?;
    let models = data["models"].as_array().cloned().unwrap_or_default();
    for (model, provider) in [(OPENAI_MODEL, OPENAI_PROVIDER), (ANTHROPIC_MODEL, ANTHROPIC_PROVIDER)] {
        let current = models
            .iter()
            .find(|candidate| candidate["id"] == model)
            .ok_or_else(|| anyhow!("the catalog has no model {model}"))?;
        let mut input = current.clone();
        input["routes"] = json!([{ "providerKey": provider, "upstreamModel": model }]);
        input["enabled"] = json!(true);
        api.run(
            "mutation ($input: ModelInput!) { upsertModel(input: $input) { id } }",
            json!({ "input": input }),
        )
        .await?;
    }
    Ok(())
}
