//! Port: where custodian backup shares (Portal's webhooks) are kept.

use std::future::Future;

use crate::ports::store::StoreError;

/// Most shares one fetch returns: bounds the Query and the answer (a client has a few per wallet).
pub const MAX_FETCH_SHARES: usize = 200;

/// One stored custodian share (its ciphertext; never plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustodianShare {
    /// Portal client id.
    pub client_id: String,
    /// Backup share pair id.
    pub backup_share_pair_id: String,
    /// Portal's backup method.
    pub backup_method: String,
    /// The envelope ciphertext of the share.
    pub cipher_text: String,
    /// When it was last written, in seconds since the Unix epoch.
    pub updated_at: u64,
}

/// Durable storage of custodian shares.
pub trait CustodianStore: Send + Sync {
    /// Writes a share, replacing any stored under the same client and pair (Portal resends).
    fn put_custodian(
        &self,
        share: &CustodianShare,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored share of a client (at most [`MAX_FETCH_SHARES`]), strongly consistent.
    fn custodian_shares(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Vec<CustodianShare>, StoreError>> + Send;
}
