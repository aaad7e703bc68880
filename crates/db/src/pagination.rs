//! Relay-style pagination shared by every connection of the API.
//!
//! Pages are keyset pages over `(created_at, id)`: a cursor names the last
//! row seen, and the next page is "the rows after it" in the list's order.
//! Unlike offsets, rows inserted or deleted meanwhile never shift a page,
//! so walking a list gives no gaps and no repeats, and every page costs
//! one index range scan however deep it is.
//!
//! Plain values only (the GraphQL `PageInfo` type mirrors [`PageInfo`] in
//! the GraphQL layer's `connection`), so services page their lists with
//! it without knowing GraphQL.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use diesel::{
    expression::{BoxableExpression, Expression, SelectableExpression, ValidGrouping, is_aggregate},
    pg::Pg,
    prelude::*,
    query_builder::QueryFragment,
    query_dsl::methods::OrderDsl,
    sql_types::{Bool, Timestamptz, Uuid as SqlUuid},
};
use uuid::Uuid;

use tollgate_core::error::{AppError, AppResult};

/// Rows per page when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The most rows one page returns; a larger `first` is capped to it.
pub const MAX_PAGE_SIZE: i64 = 100;

/// Where a page sits in its list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageInfo {
    /// A cursor was given: rows come before this page.
    pub has_previous_page: bool,
    /// More rows follow this page.
    pub has_next_page: bool,
    /// The cursor of the first row of this page.
    pub start_cursor: Option<String>,
    /// The cursor of the last row of this page; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// A position in a list ordered by `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The row's creation time.
    pub created_at: DateTime<Utc>,
    /// The row's id, which breaks ties between rows created together.
    pub id: Uuid,
}

impl Cursor {
    /// The cursor of a row.
    pub fn new(created_at: DateTime<Utc>, id: Uuid) -> Self {
        Self { created_at, id }
    }

    /// The opaque text handed to clients: base64 of `micros:uuid`.
    /// PostgreSQL keeps microseconds, so the round trip is exact.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at.timestamp_micros(), self.id))
    }

    /// Reads a cursor given as argument `field`; anything that is not one
    /// of ours is BAD_USER_INPUT naming that argument.
    pub fn decode(text: &str, field: &'static str) -> AppResult<Self> {
        Self::parse(text).ok_or_else(|| AppError::bad_input(field, "not a cursor from this list"))
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once(':')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Which way a list runs over `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
}

/// The `first` and `after` arguments of one connection field, checked.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// How many rows the page holds at most.
    pub first: i64,
    /// The row the page starts after.
    pub after: Option<Cursor>,
    /// The list's order.
    pub order: SortOrder,
}

impl PageRequest {
    /// Checks the arguments: a negative `first` is BAD_USER_INPUT, a large
    /// one is capped at [`MAX_PAGE_SIZE`], none means [`DEFAULT_PAGE_SIZE`].
    pub fn new(first: Option<i32>, after: Option<&str>, order: SortOrder) -> AppResult<Self> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 => return Err(AppError::bad_input("first", "first must not be negative")),
            Some(n) => i64::from(n).min(MAX_PAGE_SIZE),
        };
        let after = after.map(|text| Cursor::decode(text, "after")).transpose()?;
        Ok(Self { first, after, order })
    }

    /// How many rows to fetch: one more than the page, to learn whether
    /// another page follows without counting.
    pub fn fetch_limit(&self) -> i64 {
        self.first + 1
    }

    /// Cuts fetched rows (at most [`PageRequest::fetch_limit`], in the
    /// list's order) into a page; `cursor_of` gives each row's position.
    pub fn page<T>(&self, mut rows: Vec<T>, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
        let wanted = usize::try_from(self.first).unwrap_or(usize::MAX);
        let has_next_page = rows.len() > wanted;
        rows.truncate(wanted);
        let items: Vec<(String, T)> = rows.into_iter().map(|row| (cursor_of(&row).encode(), row)).collect();
        let info = PageInfo {
            has_previous_page: self.after.is_some(),
            has_next_page,
            start_cursor: items.first().map(|(cursor, _)| cursor.clone()),
            end_cursor: items.last().map(|(cursor, _)| cursor.clone()),
        };
        Page { items, info }
    }
}

/// One page of a list: each row with its cursor, and where the page sits.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows in order, each with its cursor.
    pub items: Vec<(String, T)>,
    /// Where the page sits in the list.
    pub info: PageInfo,
}

impl<T> Page<T> {
    /// The same page with every row turned into something else.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(|(cursor, row)| (cursor, f(row))).collect(),
            info: self.info,
        }
    }
}

/// A SQL condition usable in the boxed queries of table(s) `QS`.
pub type Condition<QS> = Box<dyn BoxableExpression<QS, Pg, SqlType = Bool>>;

/// The condition "after `cursor`" over the columns `created_at` and `id`,
/// in `order`: `(created_at, id) > cursor` when ascending, `<` when
/// descending. Written as an OR of comparisons (rather than a row value)
/// so it works with diesel's typed columns of any table.
pub fn after_cursor<QS, C, I>(created_at: C, id: I, cursor: Cursor, order: SortOrder) -> Condition<QS>
where
    C: Expression<SqlType = Timestamptz> + Keyset<QS>,
    I: Expression<SqlType = SqlUuid> + Keyset<QS>,
{
    let at = cursor.created_at;
    let key = cursor.id;
    match order {
        SortOrder::Ascending => Box::new(created_at.gt(at).or(created_at.eq(at).and(id.gt(key)))),
        SortOrder::Descending => Box::new(created_at.lt(at).or(created_at.eq(at).and(id.lt(key)))),
    }
}

/// What a column must be to take part in a keyset condition.
pub trait Keyset<QS>:
    SelectableExpression<QS>
    + QueryFragment<Pg>
    + ValidGrouping<(), IsAggregate = is_aggregate::No>
    + ExpressionMethods
    + Copy
    + Send
    + 'static
{
}

impl<QS, T> Keyset<QS> for T where
    T: SelectableExpression<QS>
        + QueryFragment<Pg>
        + ValidGrouping<(), IsAggregate = is_aggregate::No>
        + ExpressionMethods
        + Copy
        + Send
        + 'static
{
}

/// Orders a (boxed) query by `(created_at, id)` in `order`.
pub fn ordered<Q, C, I>(query: Q, created_at: C, id: I, order: SortOrder) -> Q
where
    C: ExpressionMethods,
    I: ExpressionMethods,
    Q: OrderDsl<(diesel::dsl::Asc<C>, diesel::dsl::Asc<I>), Output = Q>
        + OrderDsl<(diesel::dsl::Desc<C>, diesel::dsl::Desc<I>), Output = Q>,
{
    match order {
        SortOrder::Ascending => OrderDsl::order(query, (created_at.asc(), id.asc())),
        SortOrder::Descending => OrderDsl::order(query, (created_at.desc(), id.desc())),
    }
}

/// `%text%` for ILIKE, with `\`, `%` and `_` in `text` escaped so they
/// match themselves (backslash is PostgreSQL's default LIKE escape).
pub fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::error::field_of;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let cursor = Cursor::new(
            DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            Uuid::now_v7(),
        );
        assert_eq!(Cursor::decode(&cursor.encode(), "after").unwrap(), cursor);
        for bad in ["", "nope", "bm9wZQ", &URL_SAFE_NO_PAD.encode("12:not-a-uuid")] {
            assert_eq!(
                field_of(PageRequest::new(None, Some(bad), SortOrder::Ascending)).as_deref(),
                Some("after"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn first_defaults_is_capped_and_cannot_be_negative() {
        let page = |first| PageRequest::new(first, None, SortOrder::Descending);
        assert_eq!(page(None).unwrap().first, DEFAULT_PAGE_SIZE);
        assert_eq!(page(Some(1000)).unwrap().first, MAX_PAGE_SIZE);
        assert_eq!(page(Some(0)).unwrap().fetch_limit(), 1);
        assert_eq!(field_of(page(Some(-1))).as_deref(), Some("first"));
    }

    #[test]
    fn a_page_knows_whether_more_follow() {
        let request = PageRequest::new(Some(2), None, SortOrder::Ascending).unwrap();
        let cursor = |n: &i64| Cursor::new(DateTime::from_timestamp_micros(*n).unwrap(), Uuid::nil());
        let full = request.page(vec![1, 2, 3], cursor);
        assert_eq!(full.items.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2]);
        assert!(full.info.has_next_page && !full.info.has_previous_page);
        assert_eq!(full.info.end_cursor, Some(cursor(&2).encode()));
        let last = request.page(vec![1], cursor);
        assert!(!last.info.has_next_page);
        let empty = request.page(Vec::new(), cursor);
        assert_eq!((empty.info.start_cursor, empty.info.end_cursor), (None, None));
    }

    #[test]
    fn search_text_matches_itself() {
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
