//! Checks of user-chosen values shared by several domains.

use serde_json::Value;

use crate::error::{AppError, AppResult};

/// The longest display name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// Validates a display name; BAD_USER_INPUT naming `field`.
pub fn clean_name(raw: &str, field: &'static str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            field,
            format!("the name must be 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

/// Validates client-chosen JSON kept as `jsonb` (preferences, settings): an
/// object of at most `max_bytes` as compact JSON. Errors name `field`.
/// U+0000, which jsonb cannot hold, never gets this far: the GraphQL
/// layer searches every argument for it first.
pub fn check_json_object(value: Value, field: &'static str, max_bytes: usize) -> AppResult<Value> {
    if !value.is_object() {
        return Err(AppError::bad_input(field, format!("{field} must be a JSON object")));
    }
    let size = serde_json::to_vec(&value).map_err(AppError::internal)?.len();
    if size > max_bytes {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be at most {} KiB as JSON", max_bytes / 1024),
        ));
    }
    Ok(value)
}
