//! Cold start: configuration and clients, built once per process and shared by every invocation.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::{
    HttpConnectorSettings, SharedHttpClient, SharedHttpConnector, http_client_fn,
};

use crate::adapters::custodian_key::SecretsManagerKey;
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::dynamodb::rate_limit::DynamoRateLimiter;
use crate::adapters::esdk::{EsdkEnvelope, EsdkSetupError};
use crate::adapters::eventbridge::EventBus;
use crate::adapters::portal_budget::PortalBudget;
use crate::adapters::portal_http::{HttpPortal, http_client};
use crate::adapters::secrets_manager::{RotatingSecret, SecretFetchError};
use crate::adapters::sqs::SqsQueue;
use crate::config::{Config, ConfigError, CustodyConfig, FunctionConfig, WebhookSecretSource};
use crate::domain::secret::WebhookSecrets;
use crate::entry::webhook::CustodyHandler;
use crate::entry::{Handler, Role, Services};
use crate::ports::webhook_secret::{FixedSecrets, SecretSource};
use crate::workflow::custody::CustodyService;

/// The AWS SDK's connect timeout (and the connector's).
const SDK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The AWS SDK settings of every client the function builds; region, credentials and endpoints
/// still come from the SDK's usual sources when it loads.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(sdk_http_client())
        // Standard retries (3 attempts, backoff with jitter) for throttling and 5xx; each
        // attempt bounded so a stalled KMS or DynamoDB call cannot eat the invocation.
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(SDK_CONNECT_TIMEOUT)
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        // Each attempt is already bounded by operation_attempt_timeout, and every response is a
        // small JSON document: the stalled-stream monitor would only add a timer per body.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
}

/// The SDK's HTTPS client, its connector built now: the SDK's default builds it on the first
/// request, and building it loads and parses the host's trust store, which would fall on the
/// first message instead of on init (issue 16). Same TLS as the default (rustls on AWS-LC, the
/// host's roots) and the same connect timeout; every client of the process shares it.
fn sdk_http_client() -> SharedHttpClient {
    let connector = SharedHttpConnector::new(
        Connector::builder()
            .connector_settings(
                HttpConnectorSettings::builder()
                    .connect_timeout(SDK_CONNECT_TIMEOUT)
                    .build(),
            )
            .sleep_impl(TokioSleep::new())
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build(),
    );
    http_client_fn(move |_settings, _components| connector.clone())
}

/// The backup function: every backup service wired to the real adapters.
pub type BackupFunction = Handler<HttpPortal, EsdkEnvelope, DynamoStore>;

/// The custody function: Portal's webhooks over the custody table and key.
pub type CustodyFunction = CustodyHandler<EsdkEnvelope, DynamoStore, CustodySecrets>;

/// Where the custody function's webhook secrets come from.
#[derive(Debug)]
pub enum CustodySecrets {
    /// Secrets Manager, read again every refresh interval (every deployment).
    Rotating(RotatingSecret),
    /// The environment's value (local runs only).
    Fixed(FixedSecrets),
}

impl SecretSource for CustodySecrets {
    async fn secrets(&self) -> std::sync::Arc<WebhookSecrets> {
        match self {
            CustodySecrets::Rotating(s) => s.secrets().await,
            CustodySecrets::Fixed(s) => s.secrets().await,
        }
    }
}

/// What this process runs, chosen by `FUNCTION_ROLE`. Built once per process, so the size
/// difference between the variants costs nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Function {
    /// The backup function.
    Backup(BackupFunction),
    /// The custody function.
    Custody(CustodyFunction),
    /// The operator function (the backup function's binary and adapters, operator actions only).
    Operator(BackupFunction),
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built (TLS roots unavailable).
    #[error("could not build the Portal HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The AWS Encryption SDK could not be set up.
    #[error(transparent)]
    Envelope(#[from] EsdkSetupError),
    /// The webhook secret could not be read from Secrets Manager.
    #[error(transparent)]
    WebhookSecret(#[from] SecretFetchError),
}

/// Reads the environment and builds the SDK and HTTP clients.
pub async fn from_env() -> Result<Function, StartupError> {
    if let Some(stack) = crate::config::stack_name() {
        crate::entry::metrics::set_stack(&stack);
    }
    let sdk = sdk_loader().load().await;
    match FunctionConfig::from_env()? {
        FunctionConfig::Backup(config) => {
            let mut handler = build(&sdk, &config)?;
            // A message waiting for Portal's budget goes back to this queue for the wait.
            if let Some(url) = &config.backup_queue_url {
                let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
                handler.redelivery = Some(std::sync::Arc::new(queue));
            }
            Ok(Function::Backup(handler))
        }
        FunctionConfig::Operator(config) => {
            let mut handler = build(&sdk, &config)?;
            handler.role = Role::Operator;
            // recover hands the wallet's new signing shares, sealed, to the backup queue.
            if let Some(url) = &config.backup_queue_url {
                let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
                handler.services.restore = handler
                    .services
                    .restore
                    .with_queue(std::sync::Arc::new(queue));
            }
            // Portal-managed eject reads the custodian API key when it needs it.
            if let Some(arn) = &config.custodian_api_key_secret_arn {
                let key = SecretsManagerKey::new(aws_sdk_secretsmanager::Client::new(&sdk), arn);
                handler.services.eject = handler
                    .services
                    .eject
                    .with_custodian_key(std::sync::Arc::new(key));
            }
            Ok(Function::Operator(handler))
        }
        FunctionConfig::Custody(config) => {
            Ok(Function::Custody(build_custody(&sdk, &config).await?))
        }
    }
}

/// Builds the backup function's clients and services for `config`; the AWS SDK reads region,
/// credentials and `AWS_ENDPOINT_URL` from `sdk`.
pub fn build(sdk: &SdkConfig, config: &Config) -> Result<BackupFunction, StartupError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let store = DynamoStore::new(dynamodb.clone(), &config.table_name);
    let http = http_client(config.portal_timeouts, config.https_only())?;
    let mut portal = HttpPortal::new(http, &config.portal_mpc_url, &config.portal_api_url);
    // Every Portal call of every invocation takes a slot of the stack's budget first.
    let budget = config.portal_rate.as_ref().map(|rate| {
        let limiter = DynamoRateLimiter::new(dynamodb, &rate.table_name, rate.rates);
        std::sync::Arc::new(PortalBudget::new(
            std::sync::Arc::new(limiter),
            rate.max_wait,
        ))
    });
    if let Some(budget) = &budget {
        portal = portal.with_budget(budget.clone());
    } else {
        tracing::warn!("PORTAL_RATE_TABLE_NAME is unset: Portal calls are not rate limited");
    }
    let envelope = EsdkEnvelope::new(aws_sdk_kms::Client::new(sdk), &config.kms_key_id)?
        .with_retired_keys(config.retired_kms_key_ids.clone());
    let mut services = Services::new(portal, envelope, store);
    services.restore = services
        .restore
        .with_plaintext_restore(config.allow_plaintext_restore);
    let stack = crate::config::stack_name().unwrap_or_default();
    let events = config.outcome_event_bus.as_ref().map(|bus| {
        let bus = EventBus::new(aws_sdk_eventbridge::Client::new(sdk), bus, stack);
        std::sync::Arc::new(bus) as std::sync::Arc<dyn crate::ports::outcome_events::OutcomeEvents>
    });
    Ok(Handler {
        role: Role::Backup,
        drill_sample: config.drill_sample,
        services,
        policy: config.request_policy(),
        max_concurrency: config.max_concurrency,
        events,
        max_receive_count: config.max_receive_count,
        budget: budget.map(|b| b as std::sync::Arc<dyn crate::ports::rate_limit::BudgetMeter>),
        redelivery: None,
    })
}

/// Builds the custody function: its own table and key, and the webhook secret, read once per
/// cold start (a secret that cannot be read stops the function from starting).
pub async fn build_custody(
    sdk: &SdkConfig,
    config: &CustodyConfig,
) -> Result<CustodyFunction, StartupError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let store = DynamoStore::new(dynamodb.clone(), &config.table_name);
    let public_values = config
        .public_values_table
        .as_ref()
        .map(|table| DynamoStore::new(dynamodb, table));
    let envelope = EsdkEnvelope::new(aws_sdk_kms::Client::new(sdk), &config.kms_key_id)?;
    let secrets = match &config.webhook_secret {
        WebhookSecretSource::Value(secret) => CustodySecrets::Fixed(FixedSecrets(
            std::sync::Arc::new(WebhookSecrets::only(secret.clone())),
        )),
        WebhookSecretSource::SecretsManager(arn) => CustodySecrets::Rotating(
            RotatingSecret::load(
                aws_sdk_secretsmanager::Client::new(sdk),
                arn.clone(),
                config.secret_refresh,
            )
            .await?,
        ),
    };
    tracing::info!(
        source_blocks = config.source_cidrs.len(),
        max_shares = config.caps.shares,
        max_bytes = config.caps.bytes,
        "custody function ready"
    );
    Ok(CustodyHandler {
        custody: CustodyService::new(envelope, store, config.caps),
        secrets,
        sources: config.source_cidrs.clone(),
        public_values,
        drill_sample: config.drill_sample,
    })
}
