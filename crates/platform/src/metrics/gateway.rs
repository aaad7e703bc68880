//! The LLM gateway's metrics: calls by provider, model and outcome, the
//! upstream's latency and time to first token, fallbacks, and refused
//! reservations.
//!
//! Labels stay bounded: providers and models are rows an administrator
//! keeps (the gateway passes the catalog id, never the name a caller
//! sent), outcomes and refusal reasons are fixed words.

use std::{collections::HashMap, time::Duration};

use super::{Metrics, histogram::Histogram, lock, text::Exposition};

/// What the gateway counts, behind one lock.
#[derive(Default)]
pub(super) struct GatewaySeries {
    requests: HashMap<(String, String, &'static str), u64>,
    upstream_latency: HashMap<String, Histogram>,
    first_token: HashMap<String, Histogram>,
    fallbacks: HashMap<String, u64>,
    refused: HashMap<&'static str, u64>,
}

impl Metrics {
    /// Counts one gateway call: who served it (`none` when no provider
    /// did), the catalog model (`unknown` when unresolved), and how it
    /// ended (a fixed word: `ok`, `upstream_error`, `cancelled`, ...).
    pub fn gateway_request(&self, provider: &str, model: &str, outcome: &'static str) {
        let mut gateway = lock(&self.inner.gateway);
        *gateway
            .requests
            .entry((provider.to_owned(), model.to_owned(), outcome))
            .or_default() += 1;
    }

    /// How long `provider` took to answer with its response head.
    pub fn gateway_upstream_latency(&self, provider: &str, elapsed: Duration) {
        let mut gateway = lock(&self.inner.gateway);
        gateway
            .upstream_latency
            .entry(provider.to_owned())
            .or_default()
            .observe(elapsed);
    }

    /// How long until the first bytes of `provider`'s answer reached the
    /// caller, from the call's start.
    pub fn gateway_first_token(&self, provider: &str, elapsed: Duration) {
        let mut gateway = lock(&self.inner.gateway);
        gateway
            .first_token
            .entry(provider.to_owned())
            .or_default()
            .observe(elapsed);
    }

    /// Counts a route given up for the next one: `provider` failed.
    pub fn gateway_fallback(&self, provider: &str) {
        let mut gateway = lock(&self.inner.gateway);
        *gateway.fallbacks.entry(provider.to_owned()).or_default() += 1;
    }

    /// Counts a call refused before it reached a provider, by reason (the
    /// UsageDenial, or `RATE_LIMITED`).
    pub fn gateway_reservation_refused(&self, reason: &'static str) {
        let mut gateway = lock(&self.inner.gateway);
        *gateway.refused.entry(reason).or_default() += 1;
    }
}

/// The gateway's families, in the text format.
pub(super) fn render(metrics: &Metrics, out: &mut Exposition) {
    let gateway = lock(&metrics.inner.gateway);
    out.family(
        "tollgate_gateway_requests_total",
        "counter",
        "LLM gateway calls by provider, catalog model and outcome.",
    );
    let mut requests: Vec<_> = gateway.requests.iter().collect();
    requests.sort();
    for ((provider, model, outcome), count) in requests {
        out.sample(
            "tollgate_gateway_requests_total",
            &[("provider", provider), ("model", model), ("outcome", outcome)],
            count,
        );
    }
    histograms(
        out,
        "tollgate_gateway_upstream_latency_seconds",
        "Time until a provider answered with its response head, by provider.",
        &gateway.upstream_latency,
    );
    histograms(
        out,
        "tollgate_gateway_time_to_first_token_seconds",
        "Time from a call's start until the provider's first bytes reached the caller, by provider.",
        &gateway.first_token,
    );
    out.family(
        "tollgate_gateway_fallbacks_total",
        "counter",
        "Routes given up for the next one, by the provider that failed.",
    );
    let mut fallbacks: Vec<_> = gateway.fallbacks.iter().collect();
    fallbacks.sort();
    for (provider, count) in fallbacks {
        out.sample("tollgate_gateway_fallbacks_total", &[("provider", provider)], count);
    }
    out.family(
        "tollgate_gateway_reservations_refused_total",
        "counter",
        "Gateway calls refused before reaching a provider, by reason (the UsageDenial or RATE_LIMITED).",
    );
    let mut refused: Vec<_> = gateway.refused.iter().collect();
    refused.sort();
    for (reason, count) in refused {
        out.sample(
            "tollgate_gateway_reservations_refused_total",
            &[("reason", reason)],
            count,
        );
    }
}

fn histograms(out: &mut Exposition, name: &str, help: &str, series: &HashMap<String, Histogram>) {
    out.family(name, "histogram", help);
    let mut providers: Vec<_> = series.keys().collect();
    providers.sort();
    for provider in providers {
        series[provider].render(out, name, &[("provider", provider)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_families_render_with_their_labels() {
        let metrics = Metrics::default();
        metrics.gateway_request("openai", "gpt-4o", "ok");
        metrics.gateway_request("openai", "gpt-4o", "ok");
        metrics.gateway_upstream_latency("openai", Duration::from_millis(20));
        metrics.gateway_first_token("openai", Duration::from_millis(30));
        metrics.gateway_fallback("backup");
        metrics.gateway_reservation_refused("ORGANIZATION_BUDGET");
        let mut out = Exposition::default();
        render(&metrics, &mut out);
        let page = out.finish();
        assert!(
            page.contains("tollgate_gateway_requests_total{provider=\"openai\",model=\"gpt-4o\",outcome=\"ok\"} 2\n"),
            "{page}"
        );
        assert!(page.contains("tollgate_gateway_upstream_latency_seconds_count{provider=\"openai\"} 1\n"));
        assert!(page.contains("tollgate_gateway_time_to_first_token_seconds_count{provider=\"openai\"} 1\n"));
        assert!(page.contains("tollgate_gateway_fallbacks_total{provider=\"backup\"} 1\n"));
        assert!(page.contains("tollgate_gateway_reservations_refused_total{reason=\"ORGANIZATION_BUDGET\"} 1\n"));
    }
}
