//! upsertModel: staff edit the catalog that prices usage.
//!
//! Prices arrive as USD per million tokens (floats, as people write them)
//! and are stored as integer micro-USD per million tokens, converted from
//! the float's exact decimal text so 0.075 is 75000, not 74999.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{
    providers::routes::{self, RouteEntry},
    usage::{
        llm_models::{self, ModelRow},
        record::check_name,
    },
};
use tollgate_core::error::{AppError, AppResult};
use tollgate_db::schema::models;

/// The highest price accepted, USD per million tokens.
const MAX_USD_PER_MTOK: f64 = 1_000_000.0;
/// Longest provider or display name, in characters.
const MAX_LABEL_CHARS: usize = 100;
/// Most other names one model may have.
const MAX_ALIASES: usize = 100;

/// A catalog entry to create or replace (by id), as staff sent it.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The model's id; stored lowercased.
    pub id: String,
    /// Other names that price as this model; stored lowercased, each once.
    pub aliases: Vec<String>,
    /// Who serves it: openai, anthropic, google, ...
    pub provider: String,
    /// Human-readable name.
    pub display_name: String,
    /// Maximum tokens of prompt plus completion, when known.
    pub context_window: Option<i32>,
    /// List price of prompt tokens, USD per million.
    pub input_usd_per_million_tokens: f64,
    /// Price of cached prompt tokens; null = the input price.
    pub cached_input_usd_per_million_tokens: Option<f64>,
    /// List price of completion tokens, USD per million.
    pub output_usd_per_million_tokens: f64,
    /// Disabled models are refused by authorizeUsage (usage is still recorded).
    pub enabled: bool,
    /// The most output tokens one call may produce, when known.
    pub max_output_tokens: Option<i32>,
    /// Replaces the model's routes when given; [] removes them; None keeps them.
    pub routes: Option<Vec<RouteEntry>>,
}

/// A checked [`ModelEntry`], prices in micro-USD per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedModel {
    id: String,
    aliases: Vec<String>,
    provider: String,
    display_name: String,
    context_window: Option<i32>,
    input: i64,
    cached_input: Option<i64>,
    output: i64,
    enabled: bool,
    max_output_tokens: Option<i32>,
}

/// Creates or replaces a catalog entry, and its routes when they are given,
/// in one transaction. Past events keep the cost they were recorded with;
/// only later ones see new prices. A name already used by another model (as
/// id or alias) is CONFLICT.
pub async fn upsert(conn: &mut AsyncPgConnection, mut input: ModelEntry, now: DateTime<Utc>) -> AppResult<ModelRow> {
    let new_routes = input.routes.take();
    let model = check(input)?;
    conn.transaction::<_, AppError, _>(async |conn| {
        // Two concurrent upserts could each miss the other's new alias;
        // staff edits are rare, so they simply take turns.
        diesel::sql_query("LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE")
            .execute(conn)
            .await?;
        let others: Vec<ModelRow> = llm_models::list(conn)
            .await?
            .into_iter()
            .filter(|other| other.id != model.id)
            .collect();
        refuse_taken_names(&model, &others)?;
        let sort_order = others.iter().map(|m| m.sort_order).max().unwrap_or(0) + 1;
        let row = save(conn, &model, sort_order, now).await?;
        if let Some(entries) = &new_routes {
            routes::replace(conn, &row.id, entries).await?;
        }
        Ok(row)
    })
    .await
}

/// CONFLICT when the id or an alias is another model's id or alias.
fn refuse_taken_names(model: &CheckedModel, others: &[ModelRow]) -> AppResult<()> {
    let names = std::iter::once(&model.id).chain(&model.aliases);
    for name in names {
        let taken = others
            .iter()
            .any(|other| &other.id == name || other.aliases.iter().flatten().any(|alias| alias == name));
        if taken {
            return Err(AppError::conflict(format!("{name:?} already names another model")));
        }
    }
    Ok(())
}

async fn save(
    conn: &mut AsyncPgConnection,
    model: &CheckedModel,
    sort_order: i32,
    now: DateTime<Utc>,
) -> QueryResult<ModelRow> {
    let aliases: Vec<Option<String>> = model.aliases.iter().cloned().map(Some).collect();
    // What a new entry is given and an existing one replaced with.
    let fields = (
        models::aliases.eq(&aliases),
        models::provider.eq(&model.provider),
        models::display_name.eq(&model.display_name),
        models::context_window.eq(model.context_window),
        models::input_micro_usd_per_mtok.eq(model.input),
        models::cached_input_micro_usd_per_mtok.eq(model.cached_input),
        models::output_micro_usd_per_mtok.eq(model.output),
        models::enabled.eq(model.enabled),
        models::max_output_tokens.eq(model.max_output_tokens),
    );
    diesel::insert_into(models::table)
        .values((
            models::id.eq(&model.id),
            fields,
            models::sort_order.eq(sort_order),
            models::created_at.eq(now),
            models::updated_at.eq(now),
        ))
        .on_conflict(models::id)
        .do_update()
        .set((fields, models::updated_at.eq(now)))
        .returning(ModelRow::as_returning())
        .get_result(conn)
        .await
}

fn check(input: ModelEntry) -> AppResult<CheckedModel> {
    let id = input.id.trim().to_lowercase();
    check_name("id", &id)?;
    if input.aliases.len() > MAX_ALIASES {
        return Err(AppError::bad_input(
            "aliases",
            format!("a model has at most {MAX_ALIASES} aliases"),
        ));
    }
    let mut aliases: Vec<String> = Vec::with_capacity(input.aliases.len());
    for alias in &input.aliases {
        let alias = alias.trim().to_lowercase();
        check_name("aliases", &alias)?;
        if alias != id && !aliases.contains(&alias) {
            aliases.push(alias);
        }
    }
    if input.context_window.is_some_and(|n| n <= 0) {
        return Err(AppError::bad_input("contextWindow", "contextWindow must be positive"));
    }
    if input.max_output_tokens.is_some_and(|n| n <= 0) {
        return Err(AppError::bad_input(
            "maxOutputTokens",
            "maxOutputTokens must be positive",
        ));
    }
    Ok(CheckedModel {
        id,
        aliases,
        provider: label("provider", &input.provider)?,
        display_name: label("displayName", &input.display_name)?,
        context_window: input.context_window,
        input: micro_usd("inputUsdPerMillionTokens", input.input_usd_per_million_tokens)?,
        cached_input: input
            .cached_input_usd_per_million_tokens
            .map(|usd| micro_usd("cachedInputUsdPerMillionTokens", usd))
            .transpose()?,
        output: micro_usd("outputUsdPerMillionTokens", input.output_usd_per_million_tokens)?,
        enabled: input.enabled,
        max_output_tokens: input.max_output_tokens,
    })
}

fn label(field: &'static str, value: &str) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be 1 to {MAX_LABEL_CHARS} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

/// USD per million tokens as integer micro-USD per million tokens, rounded
/// half up, from the float's shortest exact decimal text.
fn micro_usd(field: &'static str, usd: f64) -> AppResult<i64> {
    if !usd.is_finite() || !(0.0..=MAX_USD_PER_MTOK).contains(&usd) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be between 0 and {MAX_USD_PER_MTOK}"),
        ));
    }
    // Display of f64 is the shortest text that reads back as the same
    // float, never in exponent form: "0.075", "2.5", "0.0000001".
    let text = usd.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digit = |c: char| i64::from(c.to_digit(10).unwrap_or(0));
    let mut micro = whole.chars().fold(0_i64, |n, c| n * 10 + digit(c));
    let mut digits = fraction.chars().chain(std::iter::repeat('0'));
    for _ in 0..6 {
        micro = micro * 10 + digits.next().map_or(0, digit);
    }
    if digits.next().is_some_and(|c| digit(c) >= 5) {
        micro += 1;
    }
    Ok(micro)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_convert_exactly_and_round_half_up() {
        let micro = |usd| micro_usd("inputUsdPerMillionTokens", usd).unwrap();
        assert_eq!(micro(2.5), 2_500_000);
        assert_eq!(micro(0.075), 75_000);
        assert_eq!(micro(0.1), 100_000);
        assert_eq!(micro(0.0000005), 1, "half a micro-dollar rounds up");
        assert_eq!(micro(0.00000049), 0);
        assert_eq!(micro(1.2345675), 1_234_568);
        assert_eq!(micro(0.0), 0);
        assert_eq!(micro(1_000_000.0), 1_000_000_000_000);
        assert!(micro_usd("x", -0.01).is_err());
        assert!(micro_usd("x", f64::NAN).is_err());
        assert!(micro_usd("x", f64::INFINITY).is_err());
    }

    fn input() -> ModelEntry {
        ModelEntry {
            id: " My-Model ".into(),
            aliases: vec!["Alias-One".into(), "alias-one".into(), "my-model".into()],
            provider: "acme".into(),
            display_name: "My model".into(),
            context_window: Some(1000),
            input_usd_per_million_tokens: 1.0,
            cached_input_usd_per_million_tokens: None,
            output_usd_per_million_tokens: 2.0,
            enabled: true,
            max_output_tokens: None,
            routes: None,
        }
    }

    #[test]
    fn ids_and_aliases_are_lowercased_and_deduplicated() {
        let checked = check(input()).unwrap();
        assert_eq!(checked.id, "my-model");
        assert_eq!(checked.aliases, vec!["alias-one".to_owned()]);
        let mut empty = input();
        empty.id = "  ".into();
        assert!(check(empty).is_err());
    }
}
