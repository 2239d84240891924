//! Port: the list of a client's backups, from their checkpoint records.

use std::future::Future;

use crate::domain::checkpoint::Progress;
use crate::ports::store::StoreError;

/// One backup as its checkpoint records it, with its timestamps (epoch milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The backup's idempotency key.
    pub key: String,
    /// Its checkpoint.
    pub progress: Progress,
    /// When it was first leased.
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
    /// When Portal was told it is stored.
    pub completed_at: Option<u64>,
}

/// A client's checkpoints: the ones read, and the ones that could not be (never dropped in
/// silence: restore must not pick an older backup past one it cannot read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogued {
    /// The checkpoints read, in any order.
    pub backups: Vec<Listed>,
    /// The sort keys of checkpoint items that could not be read (no idempotency key, or a
    /// status or shares that do not parse).
    pub unreadable: Vec<String>,
}

/// Lists a client's backup checkpoints (and keeps its recoveries' records beside them).
pub trait Catalogue: Recoveries + Send + Sync {
    /// Every checkpoint of `client_id`.
    fn list(&self, client_id: &str) -> impl Future<Output = Result<Catalogued, StoreError>> + Send;
}

/// A recovery as its record keeps it: Portal issued new signing shares, sealed here before they
/// were answered, so they can never be lost with a dropped answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The backup recovered from.
    pub backup_share_pair_ids: [String; 2],
    /// The new signing share pairs Portal issued.
    pub signing_share_pair_ids: [String; 2],
    /// `{"clientApiKey", "generateResponse"}` sealed under `{clientId, purpose:
    /// generate-response}`: what a backup request takes.
    pub sealed_generate_response: String,
    /// The backup queue's message id, once the new shares were enqueued for backup.
    pub enqueued_message_id: Option<String>,
}

/// What starting a recovery under an idempotency key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryStart {
    /// Nothing under the key: this call recovers.
    Fresh,
    /// The key's recovery is done: its record answers, Portal is not called again.
    Done(Recovered),
    /// The key's recovery started (epoch milliseconds) and has not finished.
    Started(u64),
}

/// The records of a client's recoveries, one per idempotency key.
pub trait Recoveries: Send + Sync {
    /// Records the start of the recovery under `key`, unless one is recorded already.
    fn start_recovery(
        &self,
        client_id: &str,
        key: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<RecoveryStart, StoreError>> + Send;

    /// Records what the recovery under `key` got (only if it is still started).
    fn finish_recovery(
        &self,
        client_id: &str,
        key: &str,
        recovered: &Recovered,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a recovery that stopped before Portal was called (so its key can be used again);
    /// only a started one, never a finished one.
    fn release_recovery(
        &self,
        client_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that the recovery's new shares were enqueued for backup.
    fn recovery_enqueued(
        &self,
        client_id: &str,
        key: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
