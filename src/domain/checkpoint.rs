//! The checkpoint of one backup: its status, what it holds, and the key it is kept under.
//! Stored by a `Checkpoints` adapter; see `docs/exactly-once.md`.

use crate::domain::model::{BackupMode, Curve, check_id};
use crate::domain::wallet_key::WalletPublic;

/// Where a backup has got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Leased; nothing durable yet.
    InProgress,
    /// Portal created the backup shares; their ciphertexts are in the record.
    BackedUp,
    /// Ciphertexts stored and proven to decrypt, and Portal's mark failed: a retry only marks.
    Stored,
    /// Portal marked the shares stored.
    Completed,
}

impl Status {
    /// Name in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "IN_PROGRESS",
            Status::BackedUp => "BACKED_UP",
            Status::Stored => "STORED",
            Status::Completed => "COMPLETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [
            Status::InProgress,
            Status::BackedUp,
            Status::Stored,
            Status::Completed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One curve's backup share, sealed: what the checkpoint keeps (never plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedRecord {
    /// The curve.
    pub curve: Curve,
    /// Backup share pair id.
    pub id: String,
    /// The envelope ciphertext of `{"share","id"}`.
    pub cipher_text: String,
    /// The wallet's public values, as the share named them when it was sealed (public).
    pub public: Option<WalletPublic>,
}

/// A backup's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Where it has got to.
    pub status: Status,
    /// The mode it was started in.
    pub backup_mode: BackupMode,
    /// Signing share pair ids (SECP256K1, ED25519).
    pub signing_share_pair_ids: [String; 2],
    /// From `BACKED_UP` on: the sealed shares (SECP256K1, ED25519).
    pub shares: Option<[SealedRecord; 2]>,
}

/// The identity of one backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupKey {
    /// Portal client id.
    pub client_id: String,
    /// The message's `idempotencyKey`, or `<secp256k1 signing id>.<ed25519 signing id>`.
    pub key: String,
}

impl BackupKey {
    /// The key of a request.
    pub fn new(
        client_id: &str,
        explicit: Option<&str>,
        signing_share_pair_ids: &[String; 2],
    ) -> Self {
        let key = match explicit {
            Some(k) => k.to_owned(),
            None => format!(
                "{}.{}",
                signing_share_pair_ids[0], signing_share_pair_ids[1]
            ),
        };
        Self {
            client_id: client_id.to_owned(),
            key,
        }
    }
}

/// Checks a message's `idempotencyKey`.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    check_id(key)
}
