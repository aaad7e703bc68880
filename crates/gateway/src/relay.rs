//! A streamed answer passing through to the caller chunk by chunk, metered
//! on the way; the call is settled when the stream ends, or, when the
//! caller hangs up (the body is dropped), from what was generated until
//! then, which also drops the upstream connection and so stops the call.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{Stream, stream::BoxStream};
use tokio::time::Instant;
use tollgate_platform::metrics::Metrics;
use tollgate_services::usage::pricing::Tokens;

use crate::{hold::Hold, wire::StreamMeter};

/// Labels and timings of the request metrics.
pub struct Report {
    /// The app's metrics.
    pub metrics: Metrics,
    /// The provider that serves the call.
    pub provider: String,
    /// The catalog model.
    pub model: String,
    /// When the gateway received the call.
    pub started: Instant,
}

/// The response body of a streamed call.
pub struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    meter: StreamMeter,
    hold: Option<Hold>,
    report: Report,
    first_sent: bool,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The provider closed it.
    Finished,
    /// It broke off (an error or the total timeout).
    Cut,
    /// The caller went away.
    Cancelled,
}

impl Relay {
    /// Relays `upstream` through `meter`, settling `hold` at the end.
    pub fn new(
        upstream: BoxStream<'static, reqwest::Result<Bytes>>,
        meter: StreamMeter,
        hold: Hold,
        report: Report,
    ) -> Self {
        Self {
            upstream,
            meter,
            hold: Some(hold),
            report,
            first_sent: false,
        }
    }

    /// Settles the call (once) and counts it.
    fn end(&mut self, end: End) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        let trusted = self.meter.completed() || end == End::Finished;
        let (tokens, estimated) = match self.meter.usage() {
            Some(usage) if trusted => (
                Tokens {
                    prompt: usage.prompt,
                    cached: usage.cached,
                    completion: usage.completion,
                },
                false,
            ),
            // What is known: the provider's counts so far, else the prompt
            // estimate; the larger of its output count and the gateway's
            // own count of the text it saw.
            usage => (
                Tokens {
                    prompt: usage.map_or(hold.prompt_estimate(), |u| u.prompt),
                    cached: usage.map_or(0, |u| u.cached),
                    completion: usage.map_or(0, |u| u.completion).max(self.meter.generated_estimate()),
                },
                true,
            ),
        };
        hold.settle(tokens, estimated);
        let outcome = match end {
            End::Finished => "ok",
            End::Cut => "cut",
            End::Cancelled => "cancelled",
        };
        let report = &self.report;
        report.metrics.gateway_request(&report.provider, &report.model, outcome);
    }

    fn sending(&mut self, bytes: Bytes) -> Poll<Option<std::io::Result<Bytes>>> {
        if !self.first_sent {
            self.first_sent = true;
            let report = &self.report;
            report
                .metrics
                .gateway_first_token(&report.provider, report.started.elapsed());
        }
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Stream for Relay {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.hold.is_none() {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = this.meter.feed(&chunk);
                    if !out.is_empty() {
                        return this.sending(out);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e.without_url(), provider = %this.report.provider, "gateway: a provider's stream broke off");
                    this.end(End::Cut);
                    return Poll::Ready(Some(Err(std::io::Error::other("the provider's stream broke off"))));
                }
                Poll::Ready(None) => {
                    let tail = this.meter.finish();
                    this.end(End::Finished);
                    if tail.is_empty() {
                        return Poll::Ready(None);
                    }
                    return this.sending(tail);
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.end(End::Cancelled);
    }
}
