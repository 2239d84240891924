//! Port: restore drills' view of the table: completed backups, page by page along a cursor or
//! from a random segment, and the cursor itself.

use std::future::Future;

use crate::domain::checkpoint::Progress;
use crate::ports::rotation::ItemKey;
use crate::ports::store::StoreError;

/// A completed backup, as its checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedBackup {
    /// Its client.
    pub client_id: String,
    /// Its idempotency key.
    pub key: String,
    /// Its checkpoint: mode, pair ids, and the sealed copies of both shares.
    pub progress: Progress,
    /// The checkpoint item's key (where a cursor stopping after it resumes).
    pub item: ItemKey,
}

/// One page of a walk through the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletedPage {
    /// The completed backups among the items read.
    pub backups: Vec<CompletedBackup>,
    /// DynamoDB's `LastEvaluatedKey`: `None` once the walk has read the last item.
    pub last: Option<ItemKey>,
}

/// Where the drills' walk through every backup stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrillCursor {
    /// Resume after this item; `None`: from the start of the table.
    pub next: Option<ItemKey>,
    /// The cycle's number (the first is 1).
    pub cycle: u64,
    /// When the cycle started (epoch milliseconds).
    pub cycle_started_at: u64,
    /// Backups proven by the walk in this cycle.
    pub proven: u64,
    /// When the last full cycle ended (epoch milliseconds), if one has.
    pub last_cycle_ended_at: Option<u64>,
    /// Bumped by each save; a save is conditional on the version read.
    pub version: u64,
}

/// The table as drills see it.
pub trait DrillTable: Send + Sync {
    /// The cursor, if a drill has saved one.
    fn drill_cursor(&self) -> impl Future<Output = Result<Option<DrillCursor>, StoreError>> + Send;

    /// Saves `cursor` if the stored one is still at `cursor.version - 1` (absent for 1);
    /// `Ok(false)` if another drill moved it meanwhile (nothing is written).
    fn save_drill_cursor(
        &self,
        cursor: &DrillCursor,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Up to `limit` items read after `start` (a Scan page), and the completed backups among them.
    fn completed_page(
        &self,
        start: Option<&ItemKey>,
        limit: u32,
    ) -> impl Future<Output = Result<CompletedPage, StoreError>> + Send;

    /// Up to `limit` items read from the start of parallel-scan `segment` of `segments`, and the
    /// completed backups among them.
    fn completed_in_segment(
        &self,
        segment: u32,
        segments: u32,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<CompletedBackup>, StoreError>> + Send;
}
