//! The foundation every other layer stands on: configuration read from the
//! environment, the one error type with the contract's codes, the clock, and
//! the facts of the request behind a call.
//! It knows nothing of the database schema, HTTP or GraphQL.

pub mod clock;
pub mod config;
pub mod error;
pub mod request;
pub mod return_url;
pub mod validate;

pub use config::Config;
pub use error::{AppError, AppResult, ErrorCode};
