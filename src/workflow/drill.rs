//! Restore drills: prove stored backups open, on a schedule, covering every backup.
//!
//! `{"action": "drill", "sample": N}` proves N completed backups as `verify` does: each
//! ciphertext read back from where its mode keeps it (the share items; for a Portal-managed
//! backup, the copy in its checkpoint record), opened under its context, and checked to be its
//! pair's share. Three quarters of N continue a cursor kept in the table that walks every backup
//! across successive drills, so each is proven once per cycle; the rest are picked from random
//! parallel-scan segments, so a backup damaged behind the cursor is still found. A drill reads a
//! bounded number of items whatever the table's size. The answer holds counts, ids, curves and
//! problems: never a share or a ciphertext.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::domain::checkpoint::SealedRecord;
use crate::domain::ciphertext::EncryptionContext;
use crate::domain::model::BackupMode;
use crate::domain::request::InputError;
use crate::domain::share::{RecordCheck, check_record};
use crate::domain::wallet_key::{Half, Verdict, check_half};
use crate::ports::drill::{CompletedBackup, DrillCursor, DrillTable};
use crate::ports::envelope::Envelope;
use crate::ports::store::BackupStore;
use crate::workflow::error::{BackupError, Cause, Step};
use crate::workflow::retry::Deadline;

/// Backups proven when the request does not say.
pub const DEFAULT_SAMPLE: u32 = 20;

/// Most backups one drill proves (it must end well within the function's timeout).
pub const MAX_SAMPLE: u32 = 500;

/// Parallel-scan segments the random picks choose among.
pub const SEGMENTS: u32 = 128;

/// Items read per random pick (one Scan page of one segment).
const SEGMENT_ITEMS: u32 = 25;

/// Scan pages the cursor's walk reads at most per drill: the cost of a drill is bounded.
const MAX_PAGES: usize = 8;

/// Backups proven at once.
const CONCURRENCY: usize = 4;

/// Time a drill needs before it starts (a page, a few opens, the cursor's save).
const NEEDED: Duration = Duration::from_secs(3);

/// A validated drill request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrillRequest {
    /// Backups to prove.
    pub sample: u32,
}

/// Whether a direct-invoke payload asks for `drill`.
pub fn is_drill(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        action: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(payload)
        .is_ok_and(|p| matches!(p.action, Some(serde_json::Value::String(a)) if a == "drill"))
}

impl DrillRequest {
    /// Parses `{"action": "drill", "sample"?}`; errors name the field, never a value.
    pub fn parse(payload: &[u8]) -> Result<Self, InputError> {
        let bad = |field: &str, problem: &str| InputError {
            field: field.chars().take(64).collect(),
            problem: problem.into(),
        };
        let doc: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| bad("body", "is not valid JSON"))?;
        let map = doc
            .as_object()
            .ok_or_else(|| bad("body", "must be a JSON object"))?;
        if let Some(unknown) = map
            .keys()
            .find(|k| !["action", "sample"].contains(&k.as_str()))
        {
            return Err(bad(unknown, "is not a field of a drill request"));
        }
        let sample = match map.get("sample") {
            None | Some(serde_json::Value::Null) => DEFAULT_SAMPLE,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_SAMPLE)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| bad("sample", "must be a whole number from 1 to 500"))?,
        };
        Ok(Self { sample })
    }
}

/// One ciphertext that did not prove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillFailure {
    /// The backup's client.
    pub client_id: String,
    /// The backup's idempotency key.
    pub key: String,
    /// The curve of the share that did not open (`None`: the backup as a whole).
    pub curve: Option<&'static str>,
    /// The kind of failure: `UNREADABLE` (missing, or did not open), `OTHER_PAIR`,
    /// `CLIENT_MISMATCH`, or `KEY_MISMATCH` (opens, but does not check against the wallet's
    /// public values).
    pub kind: &'static str,
    /// What went wrong (never a value).
    pub problem: String,
}

/// How far the walk through every backup has come.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cycle {
    /// The cycle's number (the first is 1).
    pub number: u64,
    /// Backups the walk has proven in this cycle.
    pub proven: u64,
    /// When the cycle started (epoch milliseconds).
    pub started_at: u64,
    /// How long ago the last full cycle ended, or, before any has, when this one started, in
    /// seconds: an alarm on it says the walk stalled.
    pub age_seconds: u64,
    /// When the last full cycle ended (epoch milliseconds).
    pub last_ended_at: Option<u64>,
}

/// What a drill answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillAnswer {
    /// Backups whose every share opened and named its pair.
    pub verified: u64,
    /// Backups with a share that did not.
    pub failed: u64,
    /// Each share that did not, and why.
    pub failures: Vec<DrillFailure>,
    /// Shares that opened but carry no public values to check the wallet's key against.
    pub key_unchecked: u64,
    /// The walk through every backup.
    pub cycle: Cycle,
}

/// A random `u32` from the OS (through AWS-LC); 0 if none is to be had, which only makes a pick
/// less random.
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u32::from_le_bytes(b)
}

/// What proving one share found.
enum Proof {
    /// Opened, its pair's and client's, and checked against the wallet's public values.
    Proven,
    /// As proven, but with no public values to check the key against.
    KeyUnchecked,
    /// Did not prove.
    Failed(DrillFailure),
}

/// Proves one backup; its failures, one per share (empty: verified), and its shares whose key
/// could not be checked.
async fn prove<E: Envelope, T: BackupStore>(
    envelope: &E,
    table: &T,
    backup: &CompletedBackup,
) -> (Vec<DrillFailure>, u64) {
    let Some([a, b]) = &backup.progress.shares else {
        return (
            vec![failure(
                backup,
                None,
                UNREADABLE,
                "a completed checkpoint without its sealed shares".into(),
            )],
            0,
        );
    };
    let (a, b) = futures::future::join(
        prove_share(envelope, table, backup, a),
        prove_share(envelope, table, backup, b),
    )
    .await;
    let mut failures = Vec::new();
    let mut unchecked = 0;
    for proof in [a, b] {
        match proof {
            Proof::Proven => {}
            Proof::KeyUnchecked => unchecked += 1,
            Proof::Failed(f) => failures.push(f),
        }
    }
    (failures, unchecked)
}

/// A share missing, or that did not open.
const UNREADABLE: &str = "UNREADABLE";
/// A share that opens to another pair's share.
const OTHER_PAIR: &str = "OTHER_PAIR";
/// A share that names another client.
const CLIENT_MISMATCH: &str = "CLIENT_MISMATCH";
/// A share that opens but does not check against the wallet's public values.
pub const KEY_MISMATCH: &str = "KEY_MISMATCH";

fn failure(
    backup: &CompletedBackup,
    curve: Option<&'static str>,
    kind: &'static str,
    problem: String,
) -> DrillFailure {
    DrillFailure {
        client_id: backup.client_id.clone(),
        key: backup.key.clone(),
        curve,
        kind,
        problem,
    }
}

/// The opened client half against public values: its own partial public key, the wallet's
/// public key, and the public key recorded when it was sealed.
fn key_proof(backup: &CompletedBackup, record: &SealedRecord, opened: &[u8]) -> Proof {
    let curve = Some(record.curve.as_str());
    let check = check_half(Half::Client, record.curve, opened);
    if let Verdict::Mismatch(why) = &check.verdict {
        return Proof::Failed(failure(
            backup,
            curve,
            KEY_MISMATCH,
            format!("KEY_MISMATCH: {why}"),
        ));
    }
    if let (Some(recorded), Some(named)) = (&record.public, &check.public)
        && recorded.public_key != named.public_key
    {
        return Proof::Failed(failure(
            backup,
            curve,
            KEY_MISMATCH,
            "KEY_MISMATCH: the share names another wallet public key than the one recorded when it was stored".into(),
        ));
    }
    match check.verdict {
        Verdict::Proven => Proof::Proven,
        _ => Proof::KeyUnchecked,
    }
}

/// Proves one share of a backup: read back, opened under its context, its pair's share.
async fn prove_share<E: Envelope, T: BackupStore>(
    envelope: &E,
    table: &T,
    backup: &CompletedBackup,
    record: &SealedRecord,
) -> Proof {
    let curve = Some(record.curve.as_str());
    let stored = match backup.progress.backup_mode {
        BackupMode::SelfManaged => match table.cipher_text(&backup.client_id, &record.id).await {
            Ok(Some(ct)) => ct,
            Ok(None) => {
                return Proof::Failed(failure(
                    backup,
                    curve,
                    UNREADABLE,
                    format!("share item {} is missing from the table", record.id),
                ));
            }
            Err(e) => return Proof::Failed(failure(backup, curve, UNREADABLE, e.to_string())),
        },
        // Portal's copy needs the client's API key, which the function never keeps; the
        // checkpoint's copy was verified against Portal's when the backup was made.
        BackupMode::PortalManaged => record.cipher_text.clone(),
    };
    let context = EncryptionContext::backup_share(&backup.client_id, &record.id, record.curve);
    match envelope.open(&context, &stored).await {
        Ok(opened) => match check_record(opened.expose(), &record.id, &backup.client_id) {
            RecordCheck::Matches => key_proof(backup, record, opened.expose()),
            RecordCheck::OtherPair => Proof::Failed(failure(
                backup,
                curve,
                OTHER_PAIR,
                format!("opens, but not to the share of pair {}", record.id),
            )),
            RecordCheck::OtherClient => Proof::Failed(failure(
                backup,
                curve,
                CLIENT_MISMATCH,
                format!(
                    "CLIENT_MISMATCH: opens, but its share does not name client {}",
                    backup.client_id
                ),
            )),
        },
        Err(e) => Proof::Failed(failure(backup, curve, UNREADABLE, e.to_string())),
    }
}

/// Runs one drill at `now` (epoch milliseconds).
pub async fn drill<E: Envelope, T: DrillTable + BackupStore>(
    envelope: &E,
    table: &T,
    req: DrillRequest,
    deadline: &Deadline,
    now: u64,
) -> Result<DrillAnswer, BackupError> {
    let step = |c: Cause| BackupError::new(Step::Drill, c);
    deadline.check(Step::Drill, NEEDED)?;
    let stored = table.drill_cursor().await.map_err(|e| step(e.into()))?;
    let mut cursor = start_cursor(stored.as_ref(), now);
    let walk_quota = (req.sample - req.sample / 4).max(1) as usize;
    let random_quota = req.sample as usize - walk_quota.min(req.sample as usize);

    // The walk: completed backups after the cursor, page by page, never past the table's end.
    let mut picked: Vec<CompletedBackup> = Vec::new();
    let page_items = (walk_quota as u32 * 4).clamp(25, 1000);
    for _ in 0..MAX_PAGES {
        if picked.len() >= walk_quota {
            break;
        }
        let page = table
            .completed_page(cursor.next.as_ref(), page_items)
            .await
            .map_err(|e| step(e.into()))?;
        let room = walk_quota - picked.len();
        if page.backups.len() > room {
            // Stop after the last one taken; the rest of the page comes first next time.
            picked.extend(page.backups.into_iter().take(room));
            cursor.next = picked.last().map(|b| b.item.clone());
            break;
        }
        picked.extend(page.backups);
        cursor.next = page.last;
        if cursor.next.is_none() {
            break;
        }
    }
    let walked = picked.len() as u64;
    let cycle_done = cursor.next.is_none();

    // The random picks: one backup from each of a few random segments.
    let mut seen: HashSet<(String, String)> = picked
        .iter()
        .map(|b| (b.client_id.clone(), b.key.clone()))
        .collect();
    for _ in 0..random_quota {
        let segment = random_u32() % SEGMENTS;
        let found = table
            .completed_in_segment(segment, SEGMENTS, SEGMENT_ITEMS)
            .await
            .map_err(|e| step(e.into()))?;
        if found.is_empty() {
            continue;
        }
        let choice = found[random_u32() as usize % found.len()].clone();
        if seen.insert((choice.client_id.clone(), choice.key.clone())) {
            picked.push(choice);
        }
    }

    let results: Vec<(Vec<DrillFailure>, u64)> = futures::stream::iter(picked.iter())
        .map(|b| prove(envelope, table, b))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut answer = DrillAnswer::default();
    for (failures, unchecked) in results {
        answer.key_unchecked += unchecked;
        if failures.is_empty() {
            answer.verified += 1;
        } else {
            answer.failed += 1;
            answer.failures.extend(failures);
        }
    }

    for f in &answer.failures {
        tracing::error!(
            client_id = %f.client_id,
            key = %f.key,
            curve = f.curve,
            kind = f.kind,
            problem = %f.problem,
            "drill: a backup did not prove"
        );
    }
    answer.cycle = save_cursor(table, stored.as_ref(), cursor, walked, cycle_done, now).await?;
    tracing::info!(
        verified = answer.verified,
        failed = answer.failed,
        cycle = answer.cycle.number,
        proven_in_cycle = answer.cycle.proven,
        cycle_done,
        "drill done"
    );
    Ok(answer)
}

/// Where a walk starts: the saved cursor, or the first cycle's start at `now`.
pub(crate) fn start_cursor(stored: Option<&DrillCursor>, now: u64) -> DrillCursor {
    stored.cloned().unwrap_or(DrillCursor {
        cycle: 1,
        cycle_started_at: now,
        ..DrillCursor::default()
    })
}

/// Moves the walk on by `walked` items (a walk that reached the table's end ends its cycle, and
/// the next drill starts the next one from the first item), saves the cursor if the stored one
/// is still the one read (else another drill moved it: this one's progress is not saved), and
/// answers the cycle as this drill leaves it.
pub(crate) async fn save_cursor<T: DrillTable>(
    table: &T,
    stored: Option<&DrillCursor>,
    mut cursor: DrillCursor,
    walked: u64,
    cycle_done: bool,
    now: u64,
) -> Result<Cycle, BackupError> {
    cursor.proven += walked;
    if cycle_done {
        cursor.last_cycle_ended_at = Some(now);
    }
    let reported = cursor.clone();
    if cycle_done {
        cursor = DrillCursor {
            next: None,
            cycle: cursor.cycle + 1,
            cycle_started_at: now,
            proven: 0,
            last_cycle_ended_at: Some(now),
            version: cursor.version,
        };
    }
    cursor.version = stored.map_or(0, |c| c.version) + 1;
    let saved = table
        .save_drill_cursor(&cursor)
        .await
        .map_err(|e| BackupError::new(Step::Drill, e))?;
    if !saved {
        tracing::warn!(
            "another drill moved the cursor meanwhile; this drill's progress is not saved"
        );
    }
    let since = reported
        .last_cycle_ended_at
        .unwrap_or(reported.cycle_started_at);
    Ok(Cycle {
        number: reported.cycle,
        proven: reported.proven,
        started_at: reported.cycle_started_at,
        age_seconds: now.saturating_sub(since) / 1000,
        last_ended_at: reported.last_cycle_ended_at,
    })
}

/// Restore drills over the backup table.
#[derive(Debug, Clone)]
pub struct DrillService<E, S> {
    envelope: E,
    store: S,
}

impl<E, S> DrillService<E, S> {
    /// Wires drills to their adapters.
    pub fn new(envelope: E, store: S) -> Self {
        Self { envelope, store }
    }
}

impl<E: Envelope, S: DrillTable + BackupStore> DrillService<E, S> {
    /// Runs one drill now.
    pub async fn run(
        &self,
        req: DrillRequest,
        deadline: &Deadline,
    ) -> Result<DrillAnswer, BackupError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        drill(&self.envelope, &self.store, req, deadline, now).await
    }
}

#[cfg(test)]
mod tests;
