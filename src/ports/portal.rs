//! Port: Portal's Enclave MPC API and client API, as the workflow uses them.

use std::future::Future;
use std::time::Duration;

use crate::domain::model::Curve;
use crate::domain::secret::{ClientApiKey, SecretString};

/// One curve's client backup share, as `/v1/backup` returned it.
#[derive(Debug, Clone)]
pub struct BackupShare {
    /// The curve.
    pub curve: Curve,
    /// The backup share pair id.
    pub id: String,
    /// The client backup share (base64 JSON), secret.
    pub share: SecretString,
}

/// A Portal call that failed.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// Portal answered with an error status.
    /// Portal's own message is never kept: it may quote what was sent (a share, a key).
    #[error("Portal {call} answered HTTP {status}{} ({})", error_id.as_deref().map(|id| format!(" {id}")).unwrap_or_default(), hint(*status))]
    Status {
        /// The call, e.g. `POST /v1/backup`.
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// Portal's error id (`AUTH_FAILED`, `WEBHOOK_FAILED`, …), when it sent one that has
        /// the shape of an id (`[A-Z0-9_]`, at most 64).
        error_id: Option<String>,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, or timed out.
    #[error("Portal {call} could not be reached ({detail}); transient: retry later")]
    Transport {
        /// The call.
        call: &'static str,
        /// What failed (no body, no header).
        detail: String,
        /// Whether it was a timeout (connect or whole request).
        timeout: bool,
    },
    /// The stack's own Portal budget (`ports::rate_limit`) has no slot within the time this call
    /// may wait: the call was not made.
    #[error(
        "Portal {call} was held back: the stack's budget of Portal calls per minute is taken for the next {} ms; transient: retry then",
        wait.as_millis()
    )]
    Held {
        /// The call.
        call: &'static str,
        /// How long until a slot is likely free.
        wait: Duration,
    },
    /// The stack's Portal budget could not be checked (its table): the call was not made.
    #[error("Portal {call} was not made: the rate limiter failed ({detail}); transient: retry")]
    Limiter {
        /// The call.
        call: &'static str,
        /// What failed (no value).
        detail: String,
    },
    /// Portal answered 2xx with a body that does not follow its contract.
    #[error(
        "Portal {call} answered outside its documented contract: {detail}; permanent: report to Portal"
    )]
    Contract {
        /// The call.
        call: &'static str,
        /// What is wrong (never a value).
        detail: String,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "permanent: the client API key or session token was refused",
        404 => "permanent: Portal does not know this resource for this client",
        408 | 429 => "transient: retry later",
        s if s >= 500 => "transient: retry later",
        _ => "permanent: the request was refused",
    }
}

impl PortalError {
    /// 408, 429, 5xx and transport failures are transient; other 4xx and contract breaks are not.
    pub fn is_transient(&self) -> bool {
        match self {
            PortalError::Status { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            PortalError::Transport { .. } | PortalError::Held { .. } => true,
            PortalError::Limiter { .. } => true,
            PortalError::Contract { .. } => false,
        }
    }

    /// How long to wait before trying again, when the failure says: Portal's `Retry-After`, or
    /// the wait for the stack's next free slot.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PortalError::Status { retry_after, .. } => *retry_after,
            PortalError::Held { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// The HTTP status, when Portal answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PortalError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the workflow needs of Portal.
pub trait Portal: Send + Sync {
    /// `POST /v1/backup`: new client backup shares, one per curve (SECP256K1, ED25519).
    fn backup(
        &self,
        api_key: &ClientApiKey,
        generate_response: &SecretString,
    ) -> impl Future<Output = Result<[BackupShare; 2], PortalError>> + Send;

    /// Stores a client backup share's ciphertext with Portal (Portal-managed backups).
    fn store_cipher_text(
        &self,
        api_key: &ClientApiKey,
        backup_share_pair_id: &str,
        cipher_text: &str,
    ) -> impl Future<Output = Result<(), PortalError>> + Send;

    /// Reads back a ciphertext stored with Portal.
    fn cipher_text(
        &self,
        api_key: &ClientApiKey,
        backup_share_pair_id: &str,
    ) -> impl Future<Output = Result<String, PortalError>> + Send;

    /// `POST /v1/recover` with a restored backup: new signing shares, as the JSON text of a
    /// `/v1/generate` response. Not idempotent: each call issues new shares.
    fn recover(
        &self,
        api_key: &ClientApiKey,
        backup_response: &SecretString,
    ) -> impl Future<Output = Result<SecretString, PortalError>> + Send;

    /// Marks backup share pairs `STORED_CLIENT_BACKUP_SHARE`.
    fn mark_stored(
        &self,
        api_key: &ClientApiKey,
        backup_share_pair_ids: &[String],
    ) -> impl Future<Output = Result<(), PortalError>> + Send;
}
