//! Adapter: the custodian API key from AWS Secrets Manager, read when a Portal-managed eject
//! needs it and never kept: ejects are rare, and a rotated key is then always the current one.

use crate::domain::secret::ClientApiKey;
use crate::ports::eject::{CustodianKeySource, KeyRead, KeySourceError};

/// Reads `AWSCURRENT` of one secret.
#[derive(Debug, Clone)]
pub struct SecretsManagerKey {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerKey {
    /// The key in `secret_id` (an ARN), read with `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

impl CustodianKeySource for SecretsManagerKey {
    fn custodian_key(&self) -> KeyRead<'_> {
        Box::pin(async move {
            let fail = |transient, detail: String| KeySourceError {
                secret: self.secret_id.clone(),
                transient,
                detail,
            };
            let out = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .send()
                .await
                .map_err(|e| {
                    fail(
                        crate::adapters::aws_error::is_transient(&e),
                        crate::adapters::aws_error::describe(&e),
                    )
                })?;
            match out.secret_string {
                Some(key) if !key.trim().is_empty() => Ok(ClientApiKey::new(key.trim().to_owned())),
                _ => Err(fail(false, "it has no non-empty SecretString".into())),
            }
        })
    }
}
