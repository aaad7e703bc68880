//! One group's rows: the planned rows of its recordings, in group order,
//! with each requestId inserted once per organization (recordings of
//! several organizations share a group; a requestId is unique per
//! organization only).
//!
//! A requestId that an earlier recording of the group already carries is
//! that recording's event (a duplicate, as it would be had the two been
//! written one after the other); with other numbers it is CONFLICT for the
//! later recording alone, which then writes nothing, and its neighbours are
//! untouched. A requestId known to be stored already (learned by an
//! earlier attempt of the group) is decided the same way against the stored
//! event.

use std::collections::HashMap;

use uuid::Uuid;

use super::{plan::Planned, repeats::conflict};
use crate::usage::event::UsageEventRow;
use tollgate_core::error::AppError;

/// Where a planned row's event comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A row the group inserts (index into [`Merged::candidates`]).
    Candidate(usize),
    /// The stored event of this organization and requestId.
    Stored((Uuid, String)),
}

/// The group's rows to insert and, per recording, where each of its
/// planned rows' event comes from.
pub(super) struct Merged {
    /// Rows to insert, each requestId once, in group order.
    pub(super) candidates: Vec<UsageEventRow>,
    /// The member (index into the members given) each candidate belongs to.
    pub(super) owner: Vec<usize>,
    /// Per member: the source of each of its planned rows, or why it
    /// writes nothing; None for a member left out.
    pub(super) members: Vec<Option<Result<Vec<Source>, AppError>>>,
}

impl Merged {
    /// Merges `members` in order (None: left out, as a settlement whose
    /// reservation is gone), against the `stored` events known by requestId.
    pub(super) fn new(members: &[Option<&Planned>], stored: &HashMap<(Uuid, String), UsageEventRow>) -> Self {
        let mut merged = Self {
            candidates: Vec::new(),
            owner: Vec::new(),
            members: Vec::with_capacity(members.len()),
        };
        let mut claimed: HashMap<(Uuid, &str), usize> = HashMap::new();
        for (member, planned) in members.iter().enumerate() {
            let outcome = planned.map(|planned| merged.add(member, planned, stored, &mut claimed));
            merged.members.push(outcome);
        }
        merged
    }

    /// Adds one member's rows; on CONFLICT nothing of it stays.
    fn add<'p>(
        &mut self,
        member: usize,
        planned: &'p Planned,
        stored: &HashMap<(Uuid, String), UsageEventRow>,
        claimed: &mut HashMap<(Uuid, &'p str), usize>,
    ) -> Result<Vec<Source>, AppError> {
        let mut sources = Vec::with_capacity(planned.rows.len());
        let mut own: Vec<((Uuid, &'p str), usize)> = Vec::new();
        let first_candidate = self.candidates.len();
        for (position, row) in planned.rows.iter().enumerate() {
            let Some(request_id) = row.request_id.as_deref() else {
                sources.push(self.push(member, row));
                continue;
            };
            let key = (row.organization_id, request_id);
            // Stored events are known only after a conflict: no key to
            // build for every row of a batch otherwise.
            let stored_event = if stored.is_empty() {
                None
            } else {
                let stored_key = (row.organization_id, request_id.to_owned());
                stored.get(&stored_key).map(|event| (event, Source::Stored(stored_key)))
            };
            let earlier =
                stored_event.or_else(|| claimed.get(&key).map(|&c| (&self.candidates[c], Source::Candidate(c))));
            match earlier {
                Some((event, source)) if event.same_numbers(row) => sources.push(source),
                Some(_) => {
                    self.candidates.truncate(first_candidate);
                    self.owner.truncate(first_candidate);
                    return Err(conflict().at_index(planned.input_of[position]));
                }
                None => {
                    let source = self.push(member, row);
                    if let Source::Candidate(c) = source {
                        own.push((key, c));
                    }
                    sources.push(source);
                }
            }
        }
        claimed.extend(own);
        Ok(sources)
    }

    fn push(&mut self, member: usize, row: &UsageEventRow) -> Source {
        self.candidates.push(row.clone());
        self.owner.push(member);
        Source::Candidate(self.candidates.len() - 1)
    }

    /// The candidates in insertion order: by organization and requestId,
    /// so that two transactions inserting overlapping requestIds wait for
    /// each other in the same order and never deadlock.
    pub(super) fn insertion_order(&self) -> Vec<UsageEventRow> {
        let mut rows = self.candidates.clone();
        rows.sort_by(|a, b| (a.organization_id, &a.request_id).cmp(&(b.organization_id, &b.request_id)));
        rows
    }
}
