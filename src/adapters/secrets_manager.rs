//! Adapter: the webhook secret from AWS Secrets Manager, read once at cold start.

use crate::domain::secret::WebhookSecret;

/// Why the webhook secret could not be read at cold start (names the secret, never its value).
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

/// Reads the webhook secret from Secrets Manager (once, at cold start).
pub async fn fetch_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<WebhookSecret, SecretFetchError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SecretFetchError::Sdk {
            secret_id: secret_id.to_owned(),
            detail: crate::adapters::aws_error::describe(&e),
        })?;
    out.secret_string
        .and_then(WebhookSecret::new)
        .ok_or_else(|| SecretFetchError::Empty(secret_id.to_owned()))
}
