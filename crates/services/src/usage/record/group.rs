//! Group commit: one writer in this process, so that concurrent reports
//! share one transaction: those of one hot organization instead of
//! queueing one by one on its counter row, and those of many organizations
//! (gateway calls spread over many keys, say) instead of a transaction and
//! a commit each.
//!
//! The first report of an idle writer starts a writer task at once
//! (no waiting for company: no added latency when idle). Reports that
//! arrive while its transaction is in flight queue up and form the next
//! group, written as soon as the current one commits. Each caller gets its
//! answer only after its group committed, so a receipt always stands for
//! counted usage. The writer is a task of its own, so a caller that goes
//! away (a client hanging up) neither aborts its neighbours nor leaves the
//! queue without a writer.
//!
//! The group is per process; across instances nothing changes: every
//! group takes the same locks one recording took, and the database's
//! constraints decide duplicates.

use std::sync::LazyLock;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Recorded, Reporter, check::Report, write};
use crate::usage::coalesce::Coalescer;
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

/// Most inputs one group writes: a few concurrent full batches, so one
/// transaction stays short and the insert's parameters few.
const MAX_GROUP_INPUTS: usize = 4_000;

/// A batch this large writes in a transaction of its own, beside the
/// writer. Its cost is per event (parsing, pricing, one live
/// message each), so a group gains it nothing, while queueing concurrent
/// large batches behind one writer made them take turns on one database
/// backend: four concurrent 1,000-input batches fell from 15,700 to 10,000
/// events/s in the metering benchmark. The database's locks and constraints
/// order it against the groups, as they order two instances.
const OWN_TRANSACTION_INPUTS: usize = 250;

/// What one caller records: who reports, its checked inputs in order, and
/// the reservation it settles (gateway calls).
pub(super) type Input = (Reporter, Vec<Report>, Option<Uuid>);

/// One caller's recording, waiting for its group.
pub(super) struct Job {
    input: Input,
    reply: Reply,
}

impl Job {
    /// The recording, and where its answer goes.
    pub(super) fn split(self) -> (Input, Reply) {
        (self.input, self.reply)
    }
}

/// Where a caller's answer goes: None when its reservation was already
/// gone.
pub(super) struct Reply(oneshot::Sender<AppResult<Option<Recorded>>>);

impl Reply {
    /// Answers the caller (who may have gone: then nobody listens).
    pub(super) fn answer(self, outcome: AppResult<Option<Recorded>>) {
        let _ = self.0.send(outcome);
    }
}

/// The applications with a writer at work, and the jobs waiting for their
/// next group.
static QUEUES: LazyLock<Coalescer<usize, Job>> = LazyLock::new(Coalescer::default);

/// Records through the writer and waits for the commit of the group the
/// report joined.
pub(super) async fn submit(
    app: &AppState,
    reporter: Reporter,
    reports: Vec<Report>,
    settles: Option<Uuid>,
) -> AppResult<Option<Recorded>> {
    let input = (reporter, reports, settles);
    if input.1.len() >= OWN_TRANSACTION_INPUTS {
        return alone(app, input).await;
    }
    let job = |reply| Job {
        input,
        reply: Reply(reply),
    };
    QUEUES
        .ask(app, "recorded usage", job, take_group, |app, group| async move {
            write::write_group(&app, group).await
        })
        .await
}

/// A large batch: written by a task of its own, in a transaction of its
/// own (see [`OWN_TRANSACTION_INPUTS`]), so that a caller who goes away
/// does not abort it.
async fn alone(app: &AppState, input: Input) -> AppResult<Option<Recorded>> {
    // Waiting for the task while holding a connection would deadlock a
    // full pool, as asking for a second connection would.
    tollgate_db::hold::ensure_free("recorded usage").map_err(AppError::internal)?;
    let (reply, answer) = oneshot::channel();
    let job = Job {
        input,
        reply: Reply(reply),
    };
    let app = app.clone();
    app.tasks().clone().spawn(tollgate_db::hold::scoped(async move {
        write::write_group(&app, vec![job]).await;
    }));
    answer
        .await
        .map_err(|_| AppError::internal(anyhow::anyhow!("the usage writer stopped before answering")))?
}

/// The next group: the waiting jobs in arrival order, up to
/// [`MAX_GROUP_INPUTS`] inputs (always at least one job).
fn take_group(waiting: &mut Vec<Job>) -> Vec<Job> {
    let mut inputs = 0;
    let mut count = 0;
    for job in waiting.iter() {
        inputs += job.input.1.len();
        if count > 0 && inputs > MAX_GROUP_INPUTS {
            break;
        }
        count += 1;
    }
    waiting.drain(..count).collect()
}
