//! Port: Portal-managed eject at Portal (the custodian enables it, the client fetches both
//! halves and completes it), and the custodian API key it needs.
//!
//! The key source is object-safe (a boxed future), like the backup queue: only the operator
//! function has one, so the services hold an optional `Arc<dyn CustodianKeySource>` rather than
//! carry one more type parameter through every entry point.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use crate::domain::secret::{ClientApiKey, SecretString};
use crate::ports::portal::PortalError;

/// What `ejectable-backup-shares` answers.
#[derive(Debug)]
pub struct EjectableShares {
    /// The custodian backup share, in the clear as Portal sends it: secret.
    pub custodian_backup_share: SecretString,
    /// The client backup share's cipher text as this stack stored it with Portal (sealed).
    pub encrypted_client_backup_share: String,
}

/// Portal's eject endpoints.
pub trait EjectPortal: Send + Sync {
    /// `PATCH /api/v3/custodians/me/clients/{clientId}/enable-eject` `{walletId}` with the
    /// custodian API key: answers `ejectableUntil`.
    fn enable_eject(
        &self,
        custodian_key: &ClientApiKey,
        client_id: &str,
        wallet_id: &str,
    ) -> impl Future<Output = Result<String, PortalError>> + Send;

    /// `GET /api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares` with the client's key.
    fn ejectable_shares(
        &self,
        client_key: &ClientApiKey,
        wallet_id: &str,
    ) -> impl Future<Output = Result<EjectableShares, PortalError>> + Send;

    /// `PATCH /api/v3/clients/me/wallets/{walletId}/complete-eject` with the client's key.
    fn complete_eject(
        &self,
        client_key: &ClientApiKey,
        wallet_id: &str,
    ) -> impl Future<Output = Result<(), PortalError>> + Send;
}

/// Why the custodian API key could not be read (names the secret, never its value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the custodian API key could not be read from {secret} ({}): {detail}", if *.transient { "transient: retry" } else { "permanent: check the secret and the operator role's access to it" })]
pub struct KeySourceError {
    /// The secret's id.
    pub secret: String,
    /// Whether retrying may help.
    pub transient: bool,
    /// What the service said.
    pub detail: String,
}

/// A future the key source answers.
pub type KeyRead<'a> =
    Pin<Box<dyn Future<Output = Result<ClientApiKey, KeySourceError>> + Send + 'a>>;

/// Where the custodian API key comes from (read when an eject needs it, never kept).
pub trait CustodianKeySource: Send + Sync + Debug {
    /// The key.
    fn custodian_key(&self) -> KeyRead<'_>;
}
