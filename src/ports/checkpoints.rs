//! Port: the exactly-once checkpoints, one record per backup, advanced by conditional writes.

use std::future::Future;

use crate::domain::checkpoint::{BackupKey, Progress, Status};
use crate::ports::store::{StoreError, StoredShare};

/// What taking the lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is ours: carry on from this checkpoint.
    Run(Progress),
    /// Already completed: answer with the earlier result.
    Completed(Progress),
    /// Another delivery holds a live lease.
    Busy,
}

/// The checkpoint store.
pub trait Checkpoints: Send + Sync {
    /// Takes the lease (new record, or an unfinished one whose lease expired).
    fn acquire(
        &self,
        key: &BackupKey,
        owner: &str,
        lease_until_ms: u64,
        fresh: &Progress,
    ) -> impl Future<Output = Result<Acquired, StoreError>> + Send;

    /// Moves from `from` to `to.status`, saving `to`'s shares; only while holding the lease.
    fn advance(
        &self,
        key: &BackupKey,
        owner: &str,
        from: Status,
        to: &Progress,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves from `from` to `to` and writes both shares' items, all or nothing, while holding the
    /// lease: one round trip where `advance` and two `BackupStore::put`s take three. A share item
    /// already holding a different ciphertext is a `Conflict`, as with `put`.
    fn advance_storing(
        &self,
        key: &BackupKey,
        owner: &str,
        from: Status,
        to: &Progress,
        shares: &[StoredShare; 2],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the lease up early (after a failure), so the retry need not wait for it to expire.
    fn release(
        &self,
        key: &BackupKey,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
