//! Port: where custodian backup shares (Portal's webhooks) are kept.

use std::future::Future;

use crate::ports::store::StoreError;

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
    /// When it was written, in seconds since the Unix epoch.
    pub updated_at: u64,
}

/// What a write-once put found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Nothing was stored for the pair: the share is now.
    Written,
    /// A share was already stored for the pair and stays; it is returned so the caller can tell
    /// a resend of the same share from an attempt to replace it.
    Exists(CustodianShare),
}

/// Durable storage of custodian shares.
pub trait CustodianStore: Send + Sync {
    /// Writes a share only if none is stored under the same client and pair: a custodian share
    /// is written once and never replaced.
    fn put_custodian_once(
        &self,
        share: &CustodianShare,
    ) -> impl Future<Output = Result<Put, StoreError>> + Send;

    /// Every stored share of a client, page after page, strongly consistent.
    fn custodian_shares(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Vec<CustodianShare>, StoreError>> + Send;
}
