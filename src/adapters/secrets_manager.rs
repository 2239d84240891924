//! Adapter: the webhook secrets from AWS Secrets Manager. Read at cold start (a function that
//! cannot read them does not start), then again at most every refresh interval, both
//! `AWSCURRENT` and `AWSPREVIOUS`: a rotation reaches every warm function within the interval,
//! and the previous value keeps working until it is retired.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::domain::secret::{WebhookSecret, WebhookSecrets};
use crate::ports::webhook_secret::SecretSource;

/// Why the webhook secret could not be read (names the secret, never its value).
#[derive(Debug, thiserror::Error)]
pub enum SecretFetchError {
    /// Secrets Manager refused or could not be reached.
    #[error("Secrets Manager GetSecretValue of {secret_id} failed: {detail}")]
    Sdk {
        /// The secret's ARN or name.
        secret_id: String,
        /// What the SDK said.
        detail: String,
    },
    /// The secret has no string value, or an empty one.
    #[error("Secrets Manager secret {0} has no non-empty SecretString")]
    Empty(String),
}

/// Reads one stage of the secret; `Ok(None)` when the stage does not exist (no previous value).
async fn fetch_stage(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    stage: &str,
) -> Result<Option<WebhookSecret>, SecretFetchError> {
    let out = match client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => out,
        Err(SdkError::ServiceError(e))
            if stage != CURRENT
                && matches!(e.err(), GetSecretValueError::ResourceNotFoundException(_)) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(SecretFetchError::Sdk {
                secret_id: secret_id.to_owned(),
                detail: crate::adapters::aws_error::describe(&e),
            });
        }
    };
    match out.secret_string.and_then(WebhookSecret::new) {
        Some(secret) => Ok(Some(secret)),
        None if stage == CURRENT => Err(SecretFetchError::Empty(secret_id.to_owned())),
        None => Ok(None),
    }
}

const CURRENT: &str = "AWSCURRENT";
/// The longest a refresh may delay the webhook call it rides on.
const REFRESH_BUDGET: Duration = Duration::from_secs(2);
const PREVIOUS: &str = "AWSPREVIOUS";

/// Reads `AWSCURRENT` (required) and `AWSPREVIOUS` (if any).
pub async fn fetch_secrets(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<WebhookSecrets, SecretFetchError> {
    let (current, previous) = futures::future::join(
        fetch_stage(client, secret_id, CURRENT),
        fetch_stage(client, secret_id, PREVIOUS),
    )
    .await;
    let current = current?.ok_or_else(|| SecretFetchError::Empty(secret_id.to_owned()))?;
    Ok(WebhookSecrets {
        current,
        previous: previous?,
    })
}

/// The secrets, read again once they are older than the refresh interval.
#[derive(Debug)]
pub struct RotatingSecret {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    refresh: Duration,
    held: Mutex<(Instant, Arc<WebhookSecrets>)>,
}

impl RotatingSecret {
    /// Reads the secrets now (cold start); fails if the current one cannot be read.
    pub async fn load(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        refresh: Duration,
    ) -> Result<Self, SecretFetchError> {
        let secrets = fetch_secrets(&client, &secret_id).await?;
        Ok(Self {
            client,
            secret_id,
            refresh,
            held: Mutex::new((Instant::now(), Arc::new(secrets))),
        })
    }

    fn held(&self) -> (Instant, Arc<WebhookSecrets>) {
        match self.held.lock() {
            Ok(held) => held.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn keep(&self, secrets: Arc<WebhookSecrets>) {
        let mut held = match self.held.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        *held = (Instant::now(), secrets);
    }
}

impl SecretSource for RotatingSecret {
    async fn secrets(&self) -> Arc<WebhookSecrets> {
        let (read_at, secrets) = self.held();
        if read_at.elapsed() < self.refresh {
            return secrets;
        }
        // A refresh rides on a webhook call, which Portal gives 10 s: it gets 2 of them at most.
        let fresh =
            tokio::time::timeout(REFRESH_BUDGET, fetch_secrets(&self.client, &self.secret_id))
                .await
                .unwrap_or_else(|_| {
                    Err(SecretFetchError::Sdk {
                        secret_id: self.secret_id.clone(),
                        detail: format!("no answer within {REFRESH_BUDGET:?}"),
                    })
                });
        match fresh {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                self.keep(fresh.clone());
                fresh
            }
            Err(e) => {
                // The values held stay in use; the next call after another interval tries again.
                tracing::warn!(error = %e, "could not refresh the webhook secret; the values read before stay in use");
                self.keep(secrets.clone());
                secrets
            }
        }
    }
}
