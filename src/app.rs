//! Cold start: configuration and clients, built once per process and shared by every invocation.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;

use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::kms::KmsEnvelope;
use crate::adapters::portal_http::{HttpPortal, http_client};
use crate::adapters::secrets_manager::{SecretFetchError, fetch_secret};
use crate::config::{Config, ConfigError, WebhookSecretSource};
use crate::entry::{Handler, Services};

/// The AWS SDK settings of every client the function builds; region, credentials and endpoints
/// still come from the SDK's usual sources when it loads.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        // Standard retries (3 attempts, backoff with jitter) for throttling and 5xx; each
        // attempt bounded so a stalled KMS or DynamoDB call cannot eat the invocation.
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        // Each attempt is already bounded by operation_attempt_timeout, and every response is a
        // small JSON document: the stalled-stream monitor would only add a timer per body.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
}

/// The function: every service wired to the real adapters.
pub type Function = Handler<HttpPortal, KmsEnvelope, DynamoStore>;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (TLS roots unavailable).
    #[error("could not build the Portal HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The webhook secret could not be read from Secrets Manager.
    #[error(transparent)]
    WebhookSecret(#[from] SecretFetchError),
}

/// Reads the environment and builds the SDK and HTTP clients.
pub async fn from_env() -> Result<Function, StartupError> {
    let config = Config::from_env()?;
    build(&config).await
}

/// Builds the clients for `config`, and the services over them; the AWS SDK reads region,
/// credentials and `AWS_ENDPOINT_URL` from its usual sources.
pub async fn build(config: &Config) -> Result<Function, StartupError> {
    {
        let sdk = sdk_loader().load().await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let store = config
            .table_name
            .as_ref()
            .map(|t| DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), t));
        let http = http_client(config.portal_timeouts, config.https_only())?;
        let portal = HttpPortal::new(http, &config.portal_mpc_url, &config.portal_api_url);
        let envelope = KmsEnvelope::new(kms, &config.kms_key_id);
        // Read once per cold start: a secret that cannot be read stops the function from starting.
        let webhook_secret = match &config.webhook_secret {
            None => None,
            Some(WebhookSecretSource::Value(secret)) => Some(secret.clone()),
            Some(WebhookSecretSource::SecretsManager(arn)) => {
                let client = aws_sdk_secretsmanager::Client::new(&sdk);
                Some(fetch_secret(&client, arn).await?)
            }
        };
        Ok(Handler {
            services: Services::new(portal, envelope, store),
            policy: config.request_policy(),
            max_concurrency: config.max_concurrency,
            webhook_secret,
        })
    }
}
