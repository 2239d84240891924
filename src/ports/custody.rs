//! Port: where custodian backup shares (Portal's webhooks) are kept.

use std::future::Future;

use crate::domain::model::Curve;
use crate::domain::wallet_key::WalletPublic;
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
    /// What the share adds to fetch's answer as Lambda returns it, in bytes (not secret).
    pub answer_bytes: u64,
    /// The wallet's curve and public values, where the share named a public key (public).
    pub wallet: Option<(Curve, WalletPublic)>,
}

/// How much one client may store, so that fetch always answers within Lambda's 6 MB and its
/// time budget, whoever holds the webhook secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustodianCaps {
    /// Shares per client (`MAX_CUSTODIAN_SHARES_PER_CLIENT`, 1–1000, default 100).
    pub shares: u64,
    /// Bytes of fetch's answer per client, as Lambda returns it
    /// (`MAX_CUSTODIAN_BYTES_PER_CLIENT`, 4 KiB–5 MiB, default 4 MiB).
    pub bytes: u64,
}

impl Default for CustodianCaps {
    fn default() -> Self {
        Self {
            shares: 100,
            bytes: 4 << 20,
        }
    }
}

/// What a write-once put found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Nothing was stored for the pair: the share is now.
    Written,
    /// A share was already stored for the pair and stays; it is returned so the caller can tell
    /// a resend of the same share from an attempt to replace it.
    Exists(CustodianShare),
    /// Nothing was stored for the pair, and the client already holds as many shares or bytes as
    /// it may: nothing is written.
    OverCap,
}

/// Durable storage of custodian shares.
pub trait CustodianStore: Send + Sync {
    /// Writes a share only if none is stored under the same client and pair (a custodian share
    /// is written once and never replaced), and only within the client's caps, counted
    /// atomically with the write.
    fn put_custodian_once(
        &self,
        share: &CustodianShare,
        caps: CustodianCaps,
    ) -> impl Future<Output = Result<Put, StoreError>> + Send;

    /// Every stored share of a client, page after page, strongly consistent.
    fn custodian_shares(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Vec<CustodianShare>, StoreError>> + Send;
}
