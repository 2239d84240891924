//! Port: the table that keeps client backup shares (self-managed mode), and the backend-neutral
//! error every storage port answers.

use std::future::Future;

use crate::domain::model::Curve;
use crate::domain::wallet_key::WalletPublic;

/// One stored client backup share (its ciphertext; never plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredShare {
    /// Portal client id.
    pub client_id: String,
    /// Backup share pair id (Portal's, from `/v1/backup`).
    pub backup_share_pair_id: String,
    /// The curve.
    pub curve: Curve,
    /// The signing share pair this backup belongs to.
    pub signing_share_pair_id: String,
    /// The envelope ciphertext (see `envelope`).
    pub cipher_text: String,
    /// When it was stored, in seconds since the Unix epoch.
    pub created_at: u64,
    /// The wallet's public values, kept in the clear beside the ciphertext.
    pub public: Option<WalletPublic>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend (DynamoDB in AWS) refused or could not be reached.
    #[error("{operation} failed ({}): {detail}", if *.transient { "transient: retry later" } else { "permanent: check the table name, its key schema and the function's permissions" })]
    Backend {
        /// The API operation.
        operation: &'static str,
        /// Whether retrying may help.
        transient: bool,
        /// What the SDK said.
        detail: String,
    },
    /// A different ciphertext is already stored for this pair; it is never overwritten.
    #[error(
        "a different ciphertext is already stored for backup share pair {0}; refusing to overwrite it"
    )]
    Conflict(String),
    /// Another delivery took over this backup's lease.
    #[error("lost the lease on backup {0} to another delivery (transient: retried later)")]
    LeaseLost(String),
    /// An item in the table is not of the shape this function writes.
    #[error("stored item for backup share pair {0} is malformed: {1}")]
    Corrupt(String, &'static str),
}

impl StoreError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                transient: true,
                ..
            }
        )
    }
}

/// Durable storage of ciphertexts for self-managed backups.
pub trait BackupStore: Send + Sync {
    /// Stores a share; storing the same ciphertext again succeeds, a different one is a conflict.
    fn put(&self, share: &StoredShare) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a share's ciphertext back with a strongly consistent read.
    fn cipher_text(
        &self,
        client_id: &str,
        backup_share_pair_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Reads both shares' ciphertexts of a backup back in one strongly consistent round trip.
    fn cipher_texts(
        &self,
        client_id: &str,
        backup_share_pair_ids: [&str; 2],
    ) -> impl Future<Output = Result<[Option<String>; 2], StoreError>> + Send;
}
