//! The workflow's error: which step failed, why, and whether trying again can help.

use std::fmt;

use crate::domain::request::InputError;
use crate::ports::envelope::EnvelopeError;
use crate::ports::portal::PortalError;
use crate::ports::store::StoreError;

/// A step of the backup flow, named in errors, logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Decoding and validating the message.
    Input,
    /// Opening a sealed generate response.
    Unseal,
    /// `POST /v1/backup`.
    Backup,
    /// Envelope-encrypting the client backup shares.
    Seal,
    /// Writing the ciphertexts (DynamoDB or Portal).
    Store,
    /// Taking or advancing the backup's checkpoint lease.
    Checkpoint,
    /// Reading the ciphertexts back and decrypting them.
    Verify,
    /// `PATCH …/backup-share-pairs` with `STORED_CLIENT_BACKUP_SHARE`.
    MarkStored,
    /// Re-wrapping stored data keys under the current KMS key (operator action).
    Rotate,
    /// `POST /v1/recover` with a restored backup, and sealing its new signing shares.
    Recover,
    /// A restore drill (operator action, on a schedule).
    Drill,
    /// Portal-managed eject.
    Eject,
}

impl Step {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Input => "input",
            Step::Unseal => "unseal",
            Step::Backup => "backup",
            Step::Seal => "seal",
            Step::Store => "store",
            Step::Checkpoint => "checkpoint",
            Step::Verify => "verify",
            Step::MarkStored => "mark_stored",
            Step::Rotate => "rotate",
            Step::Recover => "recover",
            Step::Drill => "drill",
            Step::Eject => "eject",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong inside a step.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The request itself is invalid.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A Portal call failed.
    #[error(transparent)]
    Portal(#[from] PortalError),
    /// KMS or the cipher failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The backup table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What was read back (or a checkpoint) is not what was written.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// The client has no completed backup to verify or restore.
    #[error("{0}")]
    NoBackup(String),
    /// Too little of the invocation is left to start this step; SQS will redeliver.
    #[error("not started: only {0:?} of the invocation left (transient: the message is retried)")]
    Deadline(std::time::Duration),
    /// The idempotency key already names the backup of another wallet (other signing share
    /// pairs, or another mode): answering that backup would leave this wallet without one.
    #[error(
        "idempotencyKey {0:?} already names the backup of other signing share pairs or another backup mode (permanent: give each wallet's backup a key of its own)"
    )]
    IdempotencyKeyReused(String),
    /// A share names another client than the request, or no client: a backup is only ever filed
    /// under the client its shares belong to.
    #[error(
        "{what} do not all name clientId {client_id} (permanent: a backup is filed only under the client its shares belong to)"
    )]
    ClientMismatch {
        /// Which shares: `the signing shares`, `Portal's backup shares`, `the stored backup`.
        what: &'static str,
        /// The client the request named.
        client_id: String,
    },
    /// The client has checkpoints that cannot be read: restore and recover do not guess past them.
    #[error("{0}")]
    UnreadableCheckpoints(String),
    /// A recovery under this key started and never finished.
    #[error("{0}")]
    RecoveryInterrupted(String),
    /// The custodian API key could not be read.
    #[error(transparent)]
    KeySource(#[from] crate::ports::eject::KeySourceError),
    /// This deployment has no Portal-managed eject (no custodian API key).
    #[error(
        "Portal-managed eject is not configured here: deploy the operator function with CustodianApiKeySecretArn (permanent)"
    )]
    EjectNotConfigured,
    /// Another delivery of the same backup holds its lease.
    #[error(
        "another delivery of this backup is in progress (transient: retried after the visibility timeout)"
    )]
    InProgress,
}

/// What was read back, or found in a checkpoint, is not what was written: permanent, and never
/// marked stored. Each names the backup share pair, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A checkpoint past `seal` without its sealed shares.
    #[error("checkpoint lacks its shares")]
    CheckpointLacksShares,
    /// A completed checkpoint without its sealed shares.
    #[error("completed checkpoint lacks its shares")]
    CompletedLacksShares,
    /// Nothing was found where the ciphertext was just stored.
    #[error("ciphertext of {0} is not found after it was stored")]
    NotFoundAfterStore(String),
    /// The stored ciphertext is gone from the table.
    #[error("ciphertext of {0} is missing from the table")]
    MissingFromTable(String),
    /// Another ciphertext was read back than the one stored.
    #[error("ciphertext of {0} read back differs from the one stored")]
    Differs(String),
    /// The ciphertext opens, but not to the share sealed.
    #[error("ciphertext of {0} does not decrypt to its share")]
    NotItsShare(String),
    /// The ciphertext opens, but not to a share of its pair.
    #[error("ciphertext of {0} does not decrypt to that pair's share")]
    NotThatPairsShare(String),
    /// The ciphertext opens to bytes that are not UTF-8 text.
    #[error("ciphertext of {0} does not decrypt to UTF-8")]
    NotUtf8(String),
}

/// A failed backup: the step, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{step} step failed: {cause}")]
pub struct BackupError {
    /// The step that failed.
    pub step: Step,
    /// Why.
    #[source]
    pub cause: Cause,
}

impl BackupError {
    /// Builds the error for a step.
    pub fn new(step: Step, cause: impl Into<Cause>) -> Self {
        Self {
            step,
            cause: cause.into(),
        }
    }

    /// Whether the same request may succeed later (throttling, timeouts, 5xx).
    pub fn is_transient(&self) -> bool {
        match &self.cause {
            Cause::Input(_)
            | Cause::Mismatch(_)
            | Cause::NoBackup(_)
            | Cause::IdempotencyKeyReused(_)
            | Cause::ClientMismatch { .. }
            | Cause::UnreadableCheckpoints(_)
            | Cause::RecoveryInterrupted(_)
            | Cause::EjectNotConfigured => false,
            Cause::KeySource(e) => e.transient,
            Cause::Deadline(_) | Cause::InProgress => true,
            Cause::Portal(e) => e.is_transient(),
            Cause::Envelope(e) => e.is_transient(),
            Cause::Store(e) => e.is_transient(),
        }
    }

    /// `transient` or `permanent`, for logs.
    pub fn kind(&self) -> &'static str {
        if self.is_transient() {
            "transient"
        } else {
            "permanent"
        }
    }

    /// The field at fault, for input errors.
    pub fn field(&self) -> Option<&str> {
        match &self.cause {
            Cause::Input(e) => Some(&e.field),
            _ => None,
        }
    }
}

impl From<InputError> for BackupError {
    fn from(e: InputError) -> Self {
        BackupError::new(Step::Input, e)
    }
}
