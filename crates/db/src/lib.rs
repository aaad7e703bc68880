//! PostgreSQL access: the pool, embedded migrations, the generated schema,
//! and the embedded server used when no `DATABASE_URL` is set.
//!
//! `diesel_async::RunQueryDsl` is imported only in modules that run
//! queries: it is implemented for every type and would otherwise capture
//! `Schema::execute` calls.

pub mod hold;
pub mod local_postgres;
pub mod migrations;
pub mod pagination;
pub mod pool;
#[rustfmt::skip]
pub mod schema;
pub mod sql_enum;

pub use pool::{DbConn, DbPool, QueryCounter};

/// For [`text_enum!`]: the enums it declares travel on the event bus by
/// their stored names.
#[doc(hidden)]
pub use serde as __serde;
