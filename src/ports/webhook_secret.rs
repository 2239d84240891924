//! Port: the webhook secrets a call of Portal's must carry, as of now.

use std::future::Future;
use std::sync::Arc;

use crate::domain::secret::WebhookSecrets;

/// Where the custody function learns the webhook secrets: read again from time to time, so a
/// rotation reaches a warm function without a restart.
pub trait SecretSource: Send + Sync {
    /// The secrets to check a call against now.
    fn secrets(&self) -> impl Future<Output = Arc<WebhookSecrets>> + Send;
}

/// Secrets that never change: local runs (`WEBHOOK_SECRET`) and tests.
#[derive(Clone, Debug)]
pub struct FixedSecrets(pub Arc<WebhookSecrets>);

impl SecretSource for FixedSecrets {
    async fn secrets(&self) -> Arc<WebhookSecrets> {
        self.0.clone()
    }
}
