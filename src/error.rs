//! The workflow's error: which step failed, why, and whether trying again can help.

use std::fmt;

use crate::envelope::EnvelopeError;
use crate::portal::PortalError;
use crate::request::InputError;
use crate::store::StoreError;

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
    /// What was read back is not what was written.
    #[error("{0}")]
    Mismatch(String),
    /// The client has no completed backup to verify or restore.
    #[error("{0}")]
    NoBackup(String),
    /// Too little of the invocation is left to start this step; SQS will redeliver.
    #[error("not started: only {0:?} of the invocation left (transient: the message is retried)")]
    Deadline(std::time::Duration),
    /// Another delivery of the same backup holds its lease.
    #[error(
        "another delivery of this backup is in progress (transient: retried after the visibility timeout)"
    )]
    InProgress,
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
            Cause::Input(_) | Cause::Mismatch(_) | Cause::NoBackup(_) => false,
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

/// Shortens an upstream message so a log line stays readable.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
