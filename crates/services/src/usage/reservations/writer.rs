//! The reservations that check no budget, inserted together: concurrent
//! gateway calls of every organization share one multi-row INSERT and its
//! commit instead of one each (see [`crate::usage::coalesce`]). Nothing is
//! decided here, so nothing orders them: each caller is answered after
//! the commit that holds its row, before it calls upstream.

use std::sync::LazyLock;

use diesel_async::RunQueryDsl;
use tokio::sync::oneshot;

use super::ReservationRow;
use crate::usage::coalesce::Coalescer;
use tollgate_auth::AppState;
use tollgate_core::error::AppResult;
use tollgate_db::schema::usage_reservations;

/// Most rows one INSERT carries (11 parameters each, well under
/// PostgreSQL's 65,535).
const MAX_ROWS: usize = 1_000;

/// A reservation waiting for its INSERT, and where its answer goes.
struct Pending {
    row: ReservationRow,
    reply: oneshot::Sender<AppResult<()>>,
}

/// The waiting reservations, per application (two apps in one process,
/// as in tests, have their own databases).
static QUEUE: LazyLock<Coalescer<usize, Pending>> = LazyLock::new(Coalescer::default);

/// Inserts `row` with whatever reservations arrive meanwhile; returns
/// once it is committed.
pub(super) async fn insert(app: &AppState, row: ReservationRow) -> AppResult<()> {
    QUEUE
        .ask(
            app,
            "a reservation",
            |reply| Pending { row, reply },
            take,
            |app, group| async move { write(&app, group).await },
        )
        .await
}

/// The next group: up to [`MAX_ROWS`] in arrival order.
fn take(waiting: &mut Vec<Pending>) -> Vec<Pending> {
    let count = waiting.len().min(MAX_ROWS);
    waiting.drain(..count).collect()
}

/// Inserts a group in one statement. Should that fail (an organization
/// deleted meanwhile), each row is inserted alone, so only its own caller
/// hears of it.
async fn write(app: &AppState, group: Vec<Pending>) {
    let (rows, replies): (Vec<ReservationRow>, Vec<_>) = group.into_iter().map(|p| (p.row, p.reply)).unzip();
    let together = insert_rows(app, &rows).await;
    if together.is_ok() || rows.len() == 1 {
        for reply in replies {
            let _ = reply.send(together.clone());
        }
        return;
    }
    for (row, reply) in rows.iter().zip(replies) {
        let _ = reply.send(insert_rows(app, std::slice::from_ref(row)).await);
    }
}

async fn insert_rows(app: &AppState, rows: &[ReservationRow]) -> AppResult<()> {
    let mut conn = app.db().await?;
    diesel::insert_into(usage_reservations::table)
        .values(rows)
        .execute(&mut conn)
        .await?;
    Ok(())
}
