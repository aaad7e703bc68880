//! A group's transaction: its organizations locked once, every
//! recording's rows inserted in one statement, the counters and the rollup
//! upserted once for all of them, thresholds announced once per
//! organization; then each caller is answered, in group order, with its
//! organization's quota as it stood just after its own events.
//!
//! A group holds recordings of any organizations, so that calls spread
//! over many organizations share a transaction as those of one hot
//! organization do. Everything keyed by requestId is keyed by
//! organization too: requestIds are unique per organization only.
//!
//! One bad recording does not abort its neighbours. A requestId stored
//! with other numbers is found by comparing after `ON CONFLICT DO
//! NOTHING`. A group is first written without a savepoint (two round
//! trips fewer, and a failure is rare; its settlements' reservations are
//! then deleted in the round trip of the lock); should that attempt fail,
//! the whole transaction rolls back and is made again guarded: each attempt
//! in a savepoint, made again with a conflicting recording refused, and
//! after any other error the recordings written one by one, each in a
//! savepoint of its own, so only the one that fails is refused. A lone
//! recording needs no savepoint: its failure aborts the transaction, as
//! it always did, and only it gets that refusal: the group's recordings
//! that planning refused keep their own.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::{
    Receipt, Recorded, Reporter, alerts,
    group::{Input, Job},
    merge::{Merged, Source},
    plan::{Planned, Slot},
    publish,
};
use crate::{
    plans::model::PlanRow,
    usage::{
        counters::{self, CounterSpan, Deltas, SubjectKind},
        daily, directory,
        event::{self, UsageEventRow},
        live_message::UsageUpdateMessage,
        quota::{self, QuotaSnapshot},
        reservations,
        windows::{self, Windows},
    },
};
use tollgate_auth::AppState;
use tollgate_core::error::{AppError, AppResult};

/// What every recording of one organization in the group shares.
pub(super) struct WriteContext<'a> {
    pub(super) organization_id: Uuid,
    pub(super) windows: &'a Windows,
    pub(super) plan: &'a PlanRow,
    pub(super) now: DateTime<Utc>,
}

/// What follows the commit: the events to publish, and whether emails
/// were queued.
#[derive(Default)]
pub(super) struct Published {
    pub(super) messages: Vec<UsageUpdateMessage>,
    pub(super) emailed: bool,
}

/// The group's organizations (windows and plan in effect) at `now`.
struct Scope {
    organizations: HashMap<Uuid, (Windows, PlanRow)>,
    now: DateTime<Utc>,
}

impl Scope {
    fn of(&self, organization_id: Uuid) -> AppResult<WriteContext<'_>> {
        let (windows, plan) = self
            .organizations
            .get(&organization_id)
            .ok_or_else(|| AppError::not_found("organization"))?;
        Ok(WriteContext {
            organization_id,
            windows,
            plan,
            now: self.now,
        })
    }
}

/// A stored event's key: its organization and requestId.
type Stored = HashMap<(Uuid, String), UsageEventRow>;

/// One recording of the group, planned.
struct Member {
    reporter: Reporter,
    planned: Planned,
    settles: Option<Uuid>,
}

/// Each job's answer, by its place in the group.
type Outcomes = Vec<Option<AppResult<Option<Recorded>>>>;

/// Writes `jobs` in one transaction and answers each caller after the
/// commit (and after publishing what it recorded).
pub(super) async fn write_group(app: &AppState, jobs: Vec<Job>) {
    let mut inputs = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (input, reply) = job.split();
        inputs.push(input);
        replies.push(reply);
    }
    let answers: Vec<AppResult<Option<Recorded>>> = match transaction(app, inputs).await {
        Ok((outcomes, published)) => {
            publish::after_commit(app, &published);
            outcomes
                .into_iter()
                .map(|outcome| outcome.unwrap_or_else(|| Err(unanswered())))
                .collect()
        }
        Err(error) => replies.iter().map(|_| Err(error.clone())).collect(),
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        reply.answer(answer);
    }
}

fn unanswered() -> AppError {
    AppError::internal(anyhow::anyhow!("a recording of the group was left unanswered"))
}

/// The group's transaction: unguarded first when it holds several
/// recordings, guarded when that fails (see the module's comment).
async fn transaction(app: &AppState, inputs: Vec<Input>) -> AppResult<(Outcomes, Published)> {
    if inputs.len() <= 1 {
        return in_transaction(app, inputs, Guard::Savepoints(Stored::new()))
            .await
            .map_err(Aborted::into_error);
    }
    let again = inputs.clone();
    match in_transaction(app, inputs, Guard::None).await {
        Ok(written) => Ok(written),
        Err(Aborted::Unguarded(found)) => {
            let mut stored = Stored::new();
            learn(&mut stored, found);
            in_transaction(app, again, Guard::Savepoints(stored))
                .await
                .map_err(Aborted::into_error)
        }
        Err(aborted) => Err(aborted.into_error()),
    }
}

/// How a group of several is guarded against one recording's failure.
enum Guard {
    /// Not at all: a failure aborts the transaction
    /// ([`Aborted::Unguarded`]), to be made again guarded.
    None,
    /// Each attempt in a savepoint, knowing these stored events.
    Savepoints(Stored),
}

/// Why a group's transaction rolled back.
enum Aborted {
    /// An unguarded attempt failed: the transaction is to be made again
    /// guarded, knowing these stored events (those it found conflicting).
    Unguarded(Vec<UsageEventRow>),
    /// The group's one recording that survived planning was refused, so
    /// nothing is left to write: the transaction rolls back and each
    /// recording is answered with its own outcome (that refusal, and the
    /// refusals planning gave its neighbours).
    Refused(Outcomes),
    /// Anything else: every recording of the group gets it.
    Error(AppError),
}

impl Aborted {
    fn into_error(self) -> AppError {
        match self {
            Self::Error(error) => error,
            Self::Unguarded(_) => AppError::internal(anyhow::anyhow!("a guarded group was aborted as unguarded")),
            Self::Refused(_) => AppError::internal(anyhow::anyhow!("a refused group was taken for a failed one")),
        }
    }
}

impl From<diesel::result::Error> for Aborted {
    fn from(error: diesel::result::Error) -> Self {
        Self::Error(error.into())
    }
}

impl From<AppError> for Aborted {
    fn from(error: AppError) -> Self {
        Self::Error(error)
    }
}

/// One try at the group's transaction.
async fn in_transaction(app: &AppState, inputs: Vec<Input>, guard: Guard) -> Result<(Outcomes, Published), Aborted> {
    let mut organization_ids: Vec<Uuid> = inputs.iter().map(|input| input.0.organization_id).collect();
    organization_ids.sort_unstable();
    organization_ids.dedup();
    let settled = settlements(inputs.iter().map(|(reporter, _, settles)| (reporter, *settles)));
    let mut conn = app.db().await?;
    let written = conn
        .transaction::<_, Aborted, _>(async |conn| {
            // Receive time is read under the organizations' locks, which
            // resetUsage takes exclusively: every event then falls wholly
            // before or after a reset, in the window its created_at says.
            // The windows' rows are read in the same round trip, by the
            // statement after the lock (pipelined): so also under it. So is
            // the settlements' deletion, when no savepoint can undo part of
            // the transaction: see [`Predeleted`].
            let shared: &AsyncPgConnection = conn;
            let predelete = matches!(guard, Guard::None) || inputs.len() <= 1;
            let ((found, catalog_version), window_rows, predeleted) = tokio::try_join!(
                windows::lock_for_recording(shared, &organization_ids),
                windows::rows_of_organizations(shared, &organization_ids),
                Predeleted::delete(shared, &settled, predelete),
            )?;
            let now = app.now();
            let mut outcomes: Outcomes = Vec::with_capacity(inputs.len());
            let Some(catalog_version) = catalog_version else {
                outcomes.extend(inputs.iter().map(|_| Some(Err(AppError::not_found("organization")))));
                predeleted.all_settled_by(&[], &outcomes, &guard)?;
                return Ok((outcomes, Published::default()));
            };
            let directory = directory::at_version_on(app, conn, catalog_version).await?;
            let catalog = &directory.catalog;
            let window_rows = window_rows
                .into_iter()
                .filter(|(subscription, _, _)| found.contains(&subscription.organization_id))
                .collect();
            let scope = Scope {
                organizations: windows::windows_at(conn, window_rows, now).await?,
                now,
            };
            let mut members = Vec::with_capacity(inputs.len());
            for (reporter, reports, settles) in inputs {
                if !scope.organizations.contains_key(&reporter.organization_id) {
                    outcomes.push(Some(Err(AppError::not_found("organization"))));
                    continue;
                }
                match Planned::new(&reporter, catalog, reports, now) {
                    Ok(planned) => {
                        members.push((
                            outcomes.len(),
                            Member {
                                reporter,
                                planned,
                                settles,
                            },
                        ));
                        outcomes.push(None);
                    }
                    Err(error) => outcomes.push(Some(Err(error))),
                }
            }
            predeleted.all_settled_by(&members, &outcomes, &guard)?;
            let published = write_members(conn, &scope, members, &mut outcomes, guard, predeleted).await?;
            Ok((outcomes, published))
        })
        .await;
    match written {
        Err(Aborted::Refused(outcomes)) => Ok((outcomes, Published::default())),
        written => written,
    }
}

/// Why an attempt rolled back.
enum Undone {
    /// Requestids of the attempt turned out stored with other numbers: the
    /// stored events, to decide them against in the next attempt.
    Stored(Vec<UsageEventRow>),
    /// Anything else.
    Failed(AppError),
}

impl From<diesel::result::Error> for Undone {
    fn from(error: diesel::result::Error) -> Self {
        Self::Failed(error.into())
    }
}

impl From<AppError> for Undone {
    fn from(error: AppError) -> Self {
        Self::Failed(error)
    }
}

/// The reservations that recordings settle (gateway calls), each with its
/// organization.
fn settlements<'a>(recordings: impl Iterator<Item = (&'a Reporter, Option<Uuid>)>) -> Vec<(Uuid, Uuid)> {
    recordings
        .filter_map(|(reporter, settles)| settles.map(|id| (reporter.organization_id, id)))
        .collect()
}

/// The settlements' reservations, deleted with the group's first
/// statements (one round trip fewer) when nothing can undo part of the
/// transaction: unguarded, or a lone recording, where any failure aborts
/// it whole and so restores them. Under savepoints each attempt deletes
/// its own, so that a member refused alone keeps its reservation (for the
/// expiry job to settle).
struct Predeleted(Option<HashSet<Uuid>>);

impl Predeleted {
    /// Deletes the reservations of `settled` when `now` says so.
    async fn delete(conn: &AsyncPgConnection, settled: &[(Uuid, Uuid)], now: bool) -> QueryResult<Self> {
        if !now {
            return Ok(Self(None));
        }
        if settled.is_empty() {
            return Ok(Self(Some(HashSet::new())));
        }
        Ok(Self(Some(reservations::delete_all(conn, settled).await?)))
    }

    /// Refuses to go on when a reservation was deleted for a recording that
    /// will not be written (its organization gone, its input refused): the
    /// transaction is then undone, so the reservation stays for the expiry
    /// job, and made again guarded (or, for a lone recording, the
    /// recording's refusal is the answer, as it would have been).
    fn all_settled_by(&self, members: &[(usize, Member)], outcomes: &Outcomes, guard: &Guard) -> Result<(), Aborted> {
        let Some(deleted) = &self.0 else {
            return Ok(());
        };
        let settling: HashSet<Uuid> = members.iter().filter_map(|(_, member)| member.settles).collect();
        if deleted.iter().all(|id| settling.contains(id)) {
            return Ok(());
        }
        Err(match guard {
            Guard::None => Aborted::Unguarded(Vec::new()),
            Guard::Savepoints(_) => Aborted::Error(
                outcomes
                    .iter()
                    .flatten()
                    .find_map(|outcome| outcome.as_ref().err().cloned())
                    .unwrap_or_else(unanswered),
            ),
        })
    }
}

/// What one attempt wrote: an answer per member, and what to publish.
struct Attempted {
    answers: Vec<AppResult<Option<Recorded>>>,
    published: Published,
}

/// Writes the members together, or one by one when together fails (see
/// the module's comment), filling in their outcomes.
async fn write_members(
    conn: &mut AsyncPgConnection,
    cx: &Scope,
    members: Vec<(usize, Member)>,
    outcomes: &mut Outcomes,
    guard: Guard,
    predeleted: Predeleted,
) -> Result<Published, Aborted> {
    let (places, members): (Vec<usize>, Vec<Member>) = members.into_iter().unzip();
    let mut published = Published::default();
    let unguarded = matches!(guard, Guard::None) && members.len() > 1;
    let mut stored = match guard {
        Guard::Savepoints(stored) => stored,
        Guard::None => Stored::new(),
    };
    if unguarded || members.len() <= 1 {
        // One attempt, no savepoint. Unguarded, a failure aborts the
        // transaction, to be made again guarded. Alone, there is no
        // neighbour to protect; nothing of a failed attempt can stay, so
        // the transaction aborts, the member refused as a next attempt
        // would refuse it, its neighbours keeping planning's refusals.
        return match attempt(conn, cx, &members, &stored, predeleted.0).await {
            Ok(attempted) => {
                settle_outcomes(&places, attempted, outcomes, &mut published);
                Ok(published)
            }
            Err(Undone::Stored(found)) if unguarded => Err(Aborted::Unguarded(found)),
            Err(Undone::Failed(_)) if unguarded => Err(Aborted::Unguarded(Vec::new())),
            Err(Undone::Stored(found)) => {
                learn(&mut stored, found);
                let refusal = refusal_against(&members, &stored).unwrap_or_else(unanswered);
                Err(refused_alone(&places, refusal, outcomes))
            }
            Err(Undone::Failed(error)) => Err(refused_alone(&places, error, outcomes)),
        };
    }
    loop {
        let tried = conn
            .transaction::<_, Undone, _>(async |conn| attempt(conn, cx, &members, &stored, None).await)
            .await;
        match tried {
            Ok(attempted) => {
                settle_outcomes(&places, attempted, outcomes, &mut published);
                return Ok(published);
            }
            Err(Undone::Stored(found)) => learn(&mut stored, found),
            Err(Undone::Failed(_)) => break,
        }
    }
    for (place, member) in places.into_iter().zip(members) {
        let alone = [member];
        loop {
            let tried = conn
                .transaction::<_, Undone, _>(async |conn| attempt(conn, cx, &alone, &stored, None).await)
                .await;
            match tried {
                Ok(attempted) => {
                    settle_outcomes(&[place], attempted, outcomes, &mut published);
                    break;
                }
                Err(Undone::Stored(found)) => learn(&mut stored, found),
                Err(Undone::Failed(error)) => {
                    outcomes[place] = Some(Err(error));
                    break;
                }
            }
        }
    }
    Ok(published)
}

/// The abort of a group whose one member (at `places`) was refused:
/// every recording keeps its own answer, not that member's refusal.
fn refused_alone(places: &[usize], refusal: AppError, outcomes: &mut Outcomes) -> Aborted {
    for place in places {
        outcomes[*place] = Some(Err(refusal.clone()));
    }
    Aborted::Refused(std::mem::take(outcomes))
}

fn learn(stored: &mut Stored, found: Vec<UsageEventRow>) {
    stored.extend(
        found
            .into_iter()
            .filter_map(|event| event.request_id.clone().map(|id| ((event.organization_id, id), event))),
    );
}

/// The CONFLICT a lone member gets against the stored events.
fn refusal_against(members: &[Member], stored: &Stored) -> Option<AppError> {
    let planned: Vec<Option<&Planned>> = members.iter().map(|m| Some(&m.planned)).collect();
    Merged::new(&planned, stored)
        .members
        .into_iter()
        .find_map(|outcome| outcome.and_then(Result::err))
}

fn settle_outcomes(places: &[usize], attempted: Attempted, outcomes: &mut Outcomes, published: &mut Published) {
    for (place, answer) in places.iter().zip(attempted.answers) {
        outcomes[*place] = Some(answer);
    }
    published.messages.extend(attempted.published.messages);
    published.emailed |= attempted.published.emailed;
}

/// One attempt at writing `members` together: settlements' reservations
/// released, rows merged and inserted, requestIds already stored sorted
/// out, then everything counted.
async fn attempt(
    conn: &mut AsyncPgConnection,
    cx: &Scope,
    members: &[Member],
    stored: &Stored,
    predeleted: Option<HashSet<Uuid>>,
) -> Result<Attempted, Undone> {
    let settled = settlements(members.iter().map(|member| (&member.reporter, member.settles)));
    let mut deleted = match predeleted {
        Some(deleted) => deleted,
        None if settled.is_empty() => HashSet::new(),
        None => reservations::delete_all(conn, &settled).await?,
    };
    // A settlement whose reservation was already gone records nothing; of
    // two settling one reservation in this group, the first records it.
    let planned: Vec<Option<&Planned>> = members
        .iter()
        .map(|member| {
            let gone = member.settles.is_some_and(|id| !deleted.remove(&id));
            (!gone).then_some(&member.planned)
        })
        .collect();
    let merged = Merged::new(&planned, stored);
    let inserted = event::insert_new(conn, &merged.insertion_order()).await?;
    let mut by_id: HashMap<Uuid, UsageEventRow> = inserted.into_iter().map(|row| (row.id, row)).collect();
    // Each candidate's event, and whether the group inserted it.
    let mut events: Vec<(UsageEventRow, bool)> = Vec::with_capacity(merged.candidates.len());
    let skipped = originals_of_skipped(conn, &merged, &by_id).await?;
    for candidate in &merged.candidates {
        match by_id.remove(&candidate.id) {
            Some(new) => events.push((new, true)),
            None => {
                let original = candidate
                    .request_id
                    .clone()
                    .map(|id| (candidate.organization_id, id))
                    .and_then(|key| skipped.get(&key).or_else(|| stored.get(&key)))
                    .ok_or_else(|| unaccounted(candidate))?;
                events.push((original.clone(), false));
            }
        }
    }
    let answers = Answers::new(members, &merged, &events, stored)?;
    let (quotas, published) = count(conn, cx, members, &answers).await?;
    let answers = answers
        .receipts
        .into_iter()
        .zip(quotas)
        .map(|(receipts, quota)| receipts.map(|receipts| receipts.map(|receipts| Recorded { receipts, quota })))
        .collect();
    Ok(Attempted { answers, published })
}

/// The stored events of the candidates the insert skipped (their
/// requestId was already stored, perhaps by another instance's commit),
/// by organization and requestId. `Undone::Stored` when one of them has
/// other numbers: the attempt is then made again knowing it.
async fn originals_of_skipped(
    conn: &mut AsyncPgConnection,
    merged: &Merged,
    inserted: &HashMap<Uuid, UsageEventRow>,
) -> Result<Stored, Undone> {
    let skipped: Vec<&UsageEventRow> = merged
        .candidates
        .iter()
        .filter(|row| !inserted.contains_key(&row.id))
        .collect();
    if skipped.is_empty() {
        return Ok(HashMap::new());
    }
    // Rare (a requestId sent again), so one query per organization.
    let mut wanted: BTreeMap<Uuid, Vec<&str>> = BTreeMap::new();
    for row in &skipped {
        if let Some(request_id) = row.request_id.as_deref() {
            wanted.entry(row.organization_id).or_default().push(request_id);
        }
    }
    let mut found = Vec::new();
    for (organization_id, request_ids) in wanted {
        found.extend(event::find_by_request_ids(conn, organization_id, &request_ids).await?);
    }
    let by_key: HashMap<(Uuid, &str), &UsageEventRow> = found
        .iter()
        .filter_map(|row| row.request_id.as_deref().map(|id| ((row.organization_id, id), row)))
        .collect();
    for row in &skipped {
        let original = row
            .request_id
            .as_deref()
            .and_then(|id| by_key.get(&(row.organization_id, id)))
            .ok_or_else(|| unaccounted(row))?;
        if !original.same_numbers(row) {
            return Err(Undone::Stored(found));
        }
    }
    let mut originals = HashMap::new();
    learn(&mut originals, found);
    Ok(originals)
}

/// A candidate the insert skipped whose original cannot be found: only a
/// bug (or a deletion racing the insert) gets here.
fn unaccounted(row: &UsageEventRow) -> AppError {
    AppError::internal(anyhow::anyhow!("usage event {} neither inserted nor found", row.id))
}

/// Per member, its receipts (or refusal, or None for a settlement whose
/// reservation was gone) and the events it added, in its input order.
struct Answers {
    receipts: Vec<AppResult<Option<Vec<Receipt>>>>,
    new_events: Vec<Vec<UsageEventRow>>,
}

impl Answers {
    fn new(members: &[Member], merged: &Merged, events: &[(UsageEventRow, bool)], stored: &Stored) -> AppResult<Self> {
        let mut answers = Self {
            receipts: Vec::with_capacity(members.len()),
            new_events: Vec::with_capacity(members.len()),
        };
        for (index, (member, outcome)) in members.iter().zip(&merged.members).enumerate() {
            let sources = match outcome {
                None => {
                    answers.receipts.push(Ok(None));
                    answers.new_events.push(Vec::new());
                    continue;
                }
                Some(Err(error)) => {
                    answers.receipts.push(Err(error.clone()));
                    answers.new_events.push(Vec::new());
                    continue;
                }
                Some(Ok(sources)) => sources,
            };
            // Per planned row: its event, and whether this member added it.
            let mut rows: Vec<(&UsageEventRow, bool)> = Vec::with_capacity(sources.len());
            for source in sources {
                rows.push(match source {
                    Source::Candidate(c) => (&events[*c].0, events[*c].1 && merged.owner[*c] == index),
                    Source::Stored(key) => {
                        let stored = stored.get(key).ok_or_else(|| {
                            AppError::internal(anyhow::anyhow!("stored event {} went missing", key.1))
                        })?;
                        (stored, false)
                    }
                });
            }
            let receipts = member
                .planned
                .slots
                .iter()
                .map(|slot| match *slot {
                    Slot::Own(row) => Receipt {
                        event: rows[row].0.clone(),
                        duplicate: !rows[row].1,
                    },
                    Slot::RepeatOf(row) => Receipt {
                        event: rows[row].0.clone(),
                        duplicate: true,
                    },
                })
                .collect();
            answers.receipts.push(Ok(Some(receipts)));
            answers
                .new_events
                .push(rows.iter().filter(|(_, new)| *new).map(|(e, _)| (*e).clone()).collect());
        }
        Ok(answers)
    }
}

/// One organization's share of the group's new events.
#[derive(Default)]
struct Share {
    deltas: Deltas,
    tokens: i64,
    requests: i64,
    events: Vec<UsageEventRow>,
}

/// Adds the group's new events to the counters (one upsert for all, by
/// organization, each one's row first), the rollup and the thresholds;
/// returns each member's quota as it stood just after its own events
/// (group order), and what to publish.
async fn count(
    conn: &mut AsyncPgConnection,
    cx: &Scope,
    members: &[Member],
    answers: &Answers,
) -> AppResult<(Vec<QuotaSnapshot>, Published)> {
    let mut shares: BTreeMap<Uuid, Share> = BTreeMap::new();
    let mut added: Vec<(i64, i64)> = Vec::with_capacity(members.len());
    for (member, events) in members.iter().zip(&answers.new_events) {
        let reporter = member.reporter;
        let organization_id = reporter.organization_id;
        let windows = cx.of(organization_id)?.windows;
        let tokens: i64 = events.iter().map(|e| i64::from(e.total_tokens)).sum();
        let requests = i64::try_from(events.len()).unwrap_or(i64::MAX);
        added.push((tokens, requests));
        let share = shares.entry(organization_id).or_default();
        if events.is_empty() {
            continue;
        }
        let deltas = &mut share.deltas;
        deltas.add(
            windows.row(SubjectKind::Organization, organization_id),
            tokens,
            requests,
        );
        if let Some(key_id) = reporter.api_key_id {
            deltas.add(windows.row(SubjectKind::ApiKey, key_id), tokens, requests);
        }
        deltas.add(windows.row(SubjectKind::Member, reporter.user_id), tokens, requests);
        deltas.add(windows.row(SubjectKind::Day, organization_id), tokens, requests);
        share.tokens += tokens;
        share.requests += requests;
        share.events.extend(events.iter().cloned());
    }
    let mut spans: Vec<(Uuid, CounterSpan)> = Vec::with_capacity(2 * shares.len());
    for organization_id in shares.keys() {
        let windows = cx.of(*organization_id)?.windows;
        spans.extend(quota::spans(*organization_id, windows).map(|span| (*organization_id, span)));
    }
    let deltas: Vec<(Uuid, &Deltas)> = shares.iter().map(|(id, share)| (*id, &share.deltas)).collect();
    // Each span names its organization (ORGANIZATION and DAY rows are the
    // organization's own), so the totals need no organization beside it.
    // Independent statements, sent together (pipelined: one round trip);
    // PostgreSQL still runs them in this order.
    let shared: &AsyncPgConnection = conn;
    let (totals, ()) = tokio::try_join!(
        counters::add_many(shared, &deltas, &spans),
        daily::add(shared, shares.values().flat_map(|share| &share.events)),
    )?;
    let totals: HashMap<CounterSpan, (i64, i64)> =
        totals.into_iter().map(|((_, span), totals)| (span, totals)).collect();
    let mut published = Published::default();
    let mut after: HashMap<Uuid, QuotaSnapshot> = HashMap::with_capacity(shares.len());
    for (organization_id, share) in shares {
        let org = cx.of(organization_id)?;
        let quota = quota::from_totals(organization_id, org.windows, org.plan, &totals);
        after.insert(organization_id, quota);
        if share.events.is_empty() {
            continue;
        }
        let (claimed, emailed) = alerts::claim_and_email(conn, &org, quota.tokens_used - share.tokens, &quota).await?;
        published.messages.extend(publish::messages(
            organization_id,
            share.events,
            quota,
            share.tokens,
            share.requests,
            &claimed,
        ));
        published.emailed |= emailed;
    }
    // Each member's quota: its organization's total less what later
    // members of that organization added.
    let mut later: HashMap<Uuid, (i64, i64)> = HashMap::new();
    let mut quotas = Vec::with_capacity(members.len());
    for (member, (tokens, requests)) in members.iter().zip(&added).rev() {
        let organization_id = member.reporter.organization_id;
        let mut quota = *after
            .get(&organization_id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a group member's quota went missing")))?;
        let later = later.entry(organization_id).or_default();
        quota.tokens_used -= later.0;
        quota.requests_today -= later.1;
        later.0 += tokens;
        later.1 += requests;
        quotas.push(quota);
    }
    quotas.reverse();
    Ok((quotas, published))
}
