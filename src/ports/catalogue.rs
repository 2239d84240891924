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

/// Lists a client's backup checkpoints.
pub trait Catalogue: Send + Sync {
    /// Every checkpoint of `client_id`, in any order.
    fn list(&self, client_id: &str)
    -> impl Future<Output = Result<Vec<Listed>, StoreError>> + Send;
}
