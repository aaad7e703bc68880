//! A call's reservation, settled exactly once whatever happens to the
//! request: recorded with the call's usage, released when no provider
//! was reached, and, when the caller goes away first (the handler or the
//! response body is dropped), recorded from what is known, `estimated`.
//!
//! Settling runs in a task of its own, tracked by the app (shutdown waits
//! for it), so it completes even when the request that started it is gone.

use tokio::task::JoinHandle;
use tollgate_auth::AppState;
use tollgate_services::usage::{
    pricing::Tokens,
    record::{self, Reporter},
    reservations::{self, Reservation, Settlement},
};

/// A granted reservation not yet settled.
pub struct Hold {
    app: AppState,
    reporter: Reporter,
    reservation: Reservation,
    model: String,
    request_id: String,
    /// The provider last sent the call, if any was.
    provider: Option<String>,
    settled: bool,
}

impl Hold {
    /// Holds `reservation`, taken for a call of `model` (the name the
    /// caller sent) with this request id.
    pub fn new(app: AppState, reporter: Reporter, reservation: Reservation, model: String, request_id: String) -> Self {
        Self {
            app,
            reporter,
            reservation,
            model,
            request_id,
            provider: None,
            settled: false,
        }
    }

    /// The call is being sent to `provider`: from now on it may be billed.
    pub fn sent_to(&mut self, provider: &str) {
        self.provider = Some(provider.to_owned());
    }

    /// The prompt estimate the reservation holds.
    pub fn prompt_estimate(&self) -> i64 {
        self.reservation.prompt_tokens
    }

    /// Records the call with `tokens` and releases the reservation, in one
    /// transaction; the returned handle completes when it is done.
    pub fn settle(mut self, tokens: Tokens, estimated: bool) -> JoinHandle<()> {
        self.settled = true;
        spawn_settlement(
            &self.app,
            self.reporter,
            Settlement {
                reservation_id: self.reservation.id,
                model: std::mem::take(&mut self.model),
                provider: self.provider.take(),
                request_id: std::mem::take(&mut self.request_id),
                tokens,
                estimated,
            },
        )
    }

    /// Gives the reservation back without recording anything: no provider
    /// produced anything billable.
    pub fn release(mut self) -> JoinHandle<()> {
        self.settled = true;
        spawn_release(
            &self.app,
            self.reporter,
            self.reservation.id,
            std::mem::take(&mut self.request_id),
        )
    }

    /// What is known of a call abandoned before its response was read:
    /// the prompt, which the provider may well have billed.
    fn prompt_only(&self) -> Tokens {
        Tokens {
            prompt: self.reservation.prompt_tokens,
            cached: 0,
            completion: 0,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        if self.provider.is_some() {
            spawn_settlement(
                &self.app,
                self.reporter,
                Settlement {
                    reservation_id: self.reservation.id,
                    model: std::mem::take(&mut self.model),
                    provider: self.provider.take(),
                    request_id: std::mem::take(&mut self.request_id),
                    tokens: self.prompt_only(),
                    estimated: true,
                },
            );
        } else {
            spawn_release(
                &self.app,
                self.reporter,
                self.reservation.id,
                std::mem::take(&mut self.request_id),
            );
        }
    }
}

fn spawn_settlement(app: &AppState, reporter: Reporter, settlement: Settlement) -> JoinHandle<()> {
    let state = app.clone();
    app.tasks().spawn(tollgate_db::hold::scoped(async move {
        let request_id = settlement.request_id.clone();
        match record::settle(&state, reporter, settlement).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(%request_id, "gateway: the reservation was settled as expired before the call ended")
            }
            Err(e) => tracing::error!(error = ?e, %request_id, "gateway: recording a call failed"),
        }
    }))
}

fn spawn_release(app: &AppState, reporter: Reporter, reservation: uuid::Uuid, request_id: String) -> JoinHandle<()> {
    let state = app.clone();
    app.tasks().spawn(tollgate_db::hold::scoped(async move {
        if let Err(e) = reservations::release(&state, reporter.organization_id, reservation).await {
            tracing::error!(error = ?e, %request_id, "gateway: releasing a reservation failed");
        }
    }))
}
