//! Migrations embedded in the binary, run at start and by `tollgate migrate`.
//!
//! diesel's migration harness is synchronous; diesel-async's
//! `AsyncConnectionWrapper` gives it a connection over the same pure-Rust
//! driver (no libpq), run on a blocking thread.

use diesel::{Connection, RunQueryDsl};
use diesel_async::{AsyncPgConnection, async_connection_wrapper::AsyncConnectionWrapper};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Advisory lock key held while migrating ("tollgate" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// Every migration under `migrations/`.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Applies pending migrations; returns the versions applied.
pub async fn run_pending(database_url: &str) -> anyhow::Result<Vec<String>> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        // Instances starting together on a fresh database take turns; the
        // lock ends with the session if anything fails.
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(&mut conn)?;
        let applied: anyhow::Result<Vec<String>> = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"));
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(&mut conn)?;
        applied
    })
    .await?
}
