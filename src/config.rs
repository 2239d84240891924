//! Configuration from the environment, read and validated once at cold start.

use std::time::Duration;

use crate::adapters::dynamodb::rate_limit::PortalRates;
use crate::adapters::portal_http::HttpTimeouts;
use crate::domain::model::BackupMode;
use crate::domain::request::RequestPolicy;
use crate::domain::secret::WebhookSecret;
use crate::domain::source::SourceAllowList;
pub use crate::ports::custody::CustodianCaps;

/// Portal's Enclave MPC API.
pub const DEFAULT_PORTAL_MPC_URL: &str = "https://mpc-client.portalhq.io";
/// Portal's client API.
pub const DEFAULT_PORTAL_API_URL: &str = "https://api.portalhq.io";

/// The function's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Mode for messages that do not name one (`BACKUP_MODE`, default `SELF_MANAGED`).
    pub backup_mode: BackupMode,
    /// KMS key that wraps data keys (`KMS_KEY_ID`: id, ARN or alias).
    pub kms_key_id: String,
    /// DynamoDB table of the checkpoints and the self-managed client ciphertexts
    /// (`BACKUP_TABLE_NAME`; required in every mode: it is what makes a backup exactly-once).
    pub table_name: String,
    /// Enclave MPC API base URL (`PORTAL_MPC_URL`).
    pub portal_mpc_url: String,
    /// Client API base URL (`PORTAL_API_URL`).
    pub portal_api_url: String,
    /// Messages of one batch processed at once (`MAX_CONCURRENCY`, 1–100, default 10).
    pub max_concurrency: usize,
    /// Refuse `generateResponse` in the clear: only `sealedGenerateResponse` is accepted
    /// (`REQUIRE_SEALED_INPUT`, `true`/`false`, default `true`).
    pub require_sealed_input: bool,
    /// Let `restore` answer the backup in the clear rather than sealed
    /// (`ALLOW_PLAINTEXT_RESTORE`, `true`/`false`, default `false`).
    pub allow_plaintext_restore: bool,
    /// Portal HTTP timeouts (`PORTAL_CONNECT_TIMEOUT_MS`, default 3000;
    /// `PORTAL_REQUEST_TIMEOUT_MS`, default 15000).
    pub portal_timeouts: HttpTimeouts,
    /// Keys earlier backups may still be under (`RETIRED_KMS_KEY_IDS`: comma-separated ARNs or
    /// key ids). A message under any key but these and `kms_key_id` is refused unopened.
    pub retired_kms_key_ids: Vec<String>,
    /// The backup queue (`BACKUP_QUEUE_URL`): the operator function enqueues a recovered
    /// wallet's new signing shares there, sealed, so they are backed up without the caller.
    pub backup_queue_url: Option<String>,
    /// The drill sample the operator function accepts (`DRILL_SAMPLE`, 1–500): the schedule's
    /// fixed payload. Unset: any.
    pub drill_sample: Option<u32>,
    /// The secret holding the custodian API key (`CUSTODIAN_API_KEY_SECRET_ARN`): the operator
    /// function's Portal-managed eject. Unset or empty: no eject.
    pub custodian_api_key_secret_arn: Option<String>,
    /// The EventBridge bus outcome events go to (`OUTCOME_EVENT_BUS`, a name or ARN; `default`
    /// is the account's default bus). Unset: no events.
    pub outcome_event_bus: Option<String>,
    /// The backup queue's `maxReceiveCount` (`MAX_RECEIVE_COUNT`, 1–1000): a failure on that
    /// delivery is a failure for good (the message goes to the DLQ next).
    pub max_receive_count: Option<u32>,
    /// The stack's Portal budget (`PORTAL_RATE_TABLE_NAME`; unset: calls are not limited).
    pub portal_rate: Option<PortalRateConfig>,
}

/// The Portal rate limiter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalRateConfig {
    /// Its table (`PORTAL_RATE_TABLE_NAME`).
    pub table_name: String,
    /// Calls per minute (`PORTAL_MPC_RATE_PER_MINUTE`, default 50; `PORTAL_API_RATE_PER_MINUTE`,
    /// default 200; 0: that API is not limited).
    pub rates: PortalRates,
    /// The longest a call waits for its slot inside an invocation
    /// (`PORTAL_RATE_MAX_WAIT_SECONDS`, 0–300, default 20); a longer wait sends the message
    /// back to its queue for that long.
    pub max_wait: Duration,
}

impl PortalRateConfig {
    /// Reads the limiter's settings; `None` without a table.
    fn from_env(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(table_name) = get("PORTAL_RATE_TABLE_NAME") else {
            return Ok(None);
        };
        if !valid_table_name(&table_name) {
            return Err(bad(
                "PORTAL_RATE_TABLE_NAME",
                "must be 3 to 255 of [A-Za-z0-9_.-]",
            ));
        }
        let rate = |name, default| number(get(name), name, default, 0, 1_000_000).map(|n| n as u32);
        Ok(Some(Self {
            table_name,
            rates: PortalRates {
                mpc_per_minute: rate("PORTAL_MPC_RATE_PER_MINUTE", 50)?,
                client_per_minute: rate("PORTAL_API_RATE_PER_MINUTE", 200)?,
            },
            max_wait: Duration::from_secs(number(
                get("PORTAL_RATE_MAX_WAIT_SECONDS"),
                "PORTAL_RATE_MAX_WAIT_SECONDS",
                20,
                0,
                300,
            )? as u64),
        }))
    }
}

/// An optional whole number from `min` to `max` (unset: `None`).
fn optional(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<u32>, ConfigError> {
    get(name)
        .map(|v| number(Some(v), name, min, min, max).map(|n| n as u32))
        .transpose()
}

/// The stack's name (`STACK_NAME`), which every metric and outcome event carries; unset for
/// local runs.
pub fn stack_name() -> Option<String> {
    std::env::var("STACK_NAME")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Which function this process is: the two trust domains run the same binary under different
/// roles, each given only its own table and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionConfig {
    /// `FUNCTION_ROLE=backup` (the default): the backup workflow, operator actions, rotation.
    Backup(Config),
    /// `FUNCTION_ROLE=custody`: Portal's custodian webhooks only.
    Custody(CustodyConfig),
    /// `FUNCTION_ROLE=operator`: the operator actions only (list, verify, restore, recover,
    /// rotate, drill), over the backup table and key, under a role of its own.
    Operator(Config),
}

/// The custody function's settings: its own table, key and webhook secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustodyConfig {
    /// KMS key that wraps the custodian shares' data keys (`CUSTODY_KMS_KEY_ID`).
    pub kms_key_id: String,
    /// DynamoDB table of the custodian shares (`CUSTODY_TABLE_NAME`).
    pub table_name: String,
    /// Where the secret of Portal's webhooks comes from (`WEBHOOK_SECRET_ARN`, or
    /// `WEBHOOK_SECRET` for local runs).
    pub webhook_secret: WebhookSecretSource,
    /// How often the secret is read again (`WEBHOOK_SECRET_REFRESH_SECONDS`, 1–3600, default
    /// 300): a rotation reaches a warm function within it.
    pub secret_refresh: Duration,
    /// The addresses Portal's calls may come from (`WEBHOOK_SOURCE_CIDRS`, required).
    pub source_cidrs: SourceAllowList,
    /// The most custodian shares and answer bytes one client may hold.
    pub caps: CustodianCaps,
    /// The backup table whose public attributes the custody drill compares with
    /// (`PUBLIC_VALUES_TABLE_NAME`; unset: it compares nothing across domains).
    pub public_values_table: Option<String>,
    /// The drill sample the custody function accepts (`DRILL_SAMPLE`, 1–500): its schedule's
    /// fixed payload. Unset: any.
    pub drill_sample: Option<u32>,
}

/// Variables only the custody function reads: set on the backup function, they are a mistake.
const CUSTODY_ONLY: [&str; 10] = [
    "CUSTODY_KMS_KEY_ID",
    "CUSTODY_TABLE_NAME",
    "WEBHOOK_SECRET_ARN",
    "WEBHOOK_SECRET",
    "ALLOW_PLAINTEXT_WEBHOOK_SECRET",
    "WEBHOOK_SECRET_REFRESH_SECONDS",
    "WEBHOOK_SOURCE_CIDRS",
    "MAX_CUSTODIAN_SHARES_PER_CLIENT",
    "MAX_CUSTODIAN_BYTES_PER_CLIENT",
    "PUBLIC_VALUES_TABLE_NAME",
];
/// Variables only the backup function reads: the custody function must not reach the client
/// shares' key or table, so naming them there is refused.
const BACKUP_ONLY: [&str; 3] = ["KMS_KEY_ID", "BACKUP_TABLE_NAME", "RETIRED_KMS_KEY_IDS"];

/// Where the webhook secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookSecretSource {
    /// A Secrets Manager secret (ARN or name), fetched once at cold start.
    SecretsManager(String),
    /// The value itself, from the environment (local runs only).
    Value(WebhookSecret),
}

/// A setting that is missing or wrong: names the variable and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {var} {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn bad(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

impl FunctionConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let refuse = |vars: &[&'static str], why: &str| match vars.iter().find(|v| get(v).is_some())
        {
            Some(var) => Err(bad(var, why.to_owned())),
            None => Ok(()),
        };
        match get("FUNCTION_ROLE").as_deref() {
            None | Some("backup") => {
                refuse(
                    &CUSTODY_ONLY,
                    "belongs to the custody function (FUNCTION_ROLE=custody), not the backup function",
                )?;
                Config::read(&get).map(FunctionConfig::Backup)
            }
            Some("operator") => {
                refuse(
                    &CUSTODY_ONLY,
                    "belongs to the custody function (FUNCTION_ROLE=custody), not the operator function",
                )?;
                Config::read(&get).map(FunctionConfig::Operator)
            }
            Some("custody") => {
                refuse(
                    &BACKUP_ONLY,
                    "must not be set on the custody function: it may not reach the client shares' key or table",
                )?;
                CustodyConfig::read(&get).map(FunctionConfig::Custody)
            }
            Some(_) => Err(bad("FUNCTION_ROLE", "must be backup, operator or custody")),
        }
    }
}

impl CustodyConfig {
    fn read(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let kms_key_id = get("CUSTODY_KMS_KEY_ID").ok_or_else(|| {
            bad(
                "CUSTODY_KMS_KEY_ID",
                "is required (the custody key: an id, ARN or alias/…)",
            )
        })?;
        let table_name =
            get("CUSTODY_TABLE_NAME").ok_or_else(|| bad("CUSTODY_TABLE_NAME", "is required"))?;
        if !valid_table_name(&table_name) {
            return Err(bad(
                "CUSTODY_TABLE_NAME",
                "must be 3 to 255 of [A-Za-z0-9_.-]",
            ));
        }
        // A secret in the environment is readable by anyone who may read the function's
        // configuration: only a local run may use one, and must say so.
        let local_secret = match get("ALLOW_PLAINTEXT_WEBHOOK_SECRET").as_deref() {
            None => false,
            Some("local-only") => true,
            Some(_) => {
                return Err(bad(
                    "ALLOW_PLAINTEXT_WEBHOOK_SECRET",
                    "must be local-only, or unset",
                ));
            }
        };
        let webhook_secret = match (get("WEBHOOK_SECRET_ARN"), get("WEBHOOK_SECRET")) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "WEBHOOK_SECRET",
                    "must not be set beside WEBHOOK_SECRET_ARN",
                ));
            }
            (Some(arn), None) => WebhookSecretSource::SecretsManager(arn),
            (None, Some(_)) if !local_secret => {
                return Err(bad(
                    "WEBHOOK_SECRET",
                    "is refused: a secret in the environment is readable from the function's configuration; use WEBHOOK_SECRET_ARN (local runs: ALLOW_PLAINTEXT_WEBHOOK_SECRET=local-only)",
                ));
            }
            (None, Some(value)) => WebhookSecretSource::Value(
                WebhookSecret::new(value).ok_or_else(|| bad("WEBHOOK_SECRET", "is empty"))?,
            ),
            (None, None) => {
                return Err(bad(
                    "WEBHOOK_SECRET_ARN",
                    "is required (the secret Portal's webhook calls carry)",
                ));
            }
        };
        let refresh = number(
            get("WEBHOOK_SECRET_REFRESH_SECONDS"),
            "WEBHOOK_SECRET_REFRESH_SECONDS",
            300,
            1,
            3600,
        )?;
        let source_cidrs = get("WEBHOOK_SOURCE_CIDRS")
            .ok_or_else(|| {
                bad(
                    "WEBHOOK_SOURCE_CIDRS",
                    "is required (Portal's webhook addresses, comma-separated CIDR blocks)",
                )
            })
            .and_then(|v| SourceAllowList::parse(&v).map_err(|e| bad("WEBHOOK_SOURCE_CIDRS", e)))?;
        let shares = number(
            get("MAX_CUSTODIAN_SHARES_PER_CLIENT"),
            "MAX_CUSTODIAN_SHARES_PER_CLIENT",
            100,
            1,
            1000,
        )?;
        let bytes = number(
            get("MAX_CUSTODIAN_BYTES_PER_CLIENT"),
            "MAX_CUSTODIAN_BYTES_PER_CLIENT",
            4 << 20,
            4 << 10,
            5 << 20,
        )?;
        let public_values_table = get("PUBLIC_VALUES_TABLE_NAME");
        if public_values_table
            .as_deref()
            .is_some_and(|t| !valid_table_name(t))
        {
            return Err(bad(
                "PUBLIC_VALUES_TABLE_NAME",
                "must be 3 to 255 of [A-Za-z0-9_.-]",
            ));
        }
        let drill_sample = optional(get, "DRILL_SAMPLE", 1, 500)?;
        Ok(CustodyConfig {
            public_values_table,
            drill_sample,
            kms_key_id,
            table_name,
            webhook_secret,
            secret_refresh: Duration::from_secs(refresh as u64),
            source_cidrs,
            caps: CustodianCaps {
                shares: shares as u64,
                bytes: bytes as u64,
            },
        })
    }
}

impl Config {
    /// Reads the backup function's settings through `get` (values already trimmed).
    fn read(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let backup_mode = match get("BACKUP_MODE") {
            None => BackupMode::SelfManaged,
            Some(v) => v.parse().map_err(|e: String| bad("BACKUP_MODE", e))?,
        };
        let kms_key_id = get("KMS_KEY_ID")
            .ok_or_else(|| bad("KMS_KEY_ID", "is required (a key id, ARN or alias/…)"))?;
        // Required in every mode: the checkpoints live there.
        let table_name = get("BACKUP_TABLE_NAME").ok_or_else(|| {
            bad(
                "BACKUP_TABLE_NAME",
                "is required (the table of checkpoints and self-managed backups)",
            )
        })?;
        if !valid_table_name(&table_name) {
            return Err(bad(
                "BACKUP_TABLE_NAME",
                "must be 3 to 255 of [A-Za-z0-9_.-]",
            ));
        }
        let portal_mpc_url = portal_url(
            get("PORTAL_MPC_URL"),
            "PORTAL_MPC_URL",
            DEFAULT_PORTAL_MPC_URL,
        )?;
        let portal_api_url = portal_url(
            get("PORTAL_API_URL"),
            "PORTAL_API_URL",
            DEFAULT_PORTAL_API_URL,
        )?;
        // On unless turned off: a generate response in the clear sits readable in the queue.
        let require_sealed_input = match get("REQUIRE_SEALED_INPUT").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(bad("REQUIRE_SEALED_INPUT", "must be true or false")),
        };
        // Off unless turned on: a plaintext restore answer is both backup halves' client half.
        let allow_plaintext_restore = match get("ALLOW_PLAINTEXT_RESTORE").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(bad("ALLOW_PLAINTEXT_RESTORE", "must be true or false")),
        };
        let max_concurrency = number(get("MAX_CONCURRENCY"), "MAX_CONCURRENCY", 10, 1, 100)?;
        let connect = number(
            get("PORTAL_CONNECT_TIMEOUT_MS"),
            "PORTAL_CONNECT_TIMEOUT_MS",
            3_000,
            100,
            60_000,
        )?;
        let request = number(
            get("PORTAL_REQUEST_TIMEOUT_MS"),
            "PORTAL_REQUEST_TIMEOUT_MS",
            15_000,
            100,
            900_000,
        )?;
        let retired_kms_key_ids: Vec<String> = get("RETIRED_KMS_KEY_IDS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if retired_kms_key_ids
            .iter()
            .any(|k| crate::domain::allowed_keys::is_alias(k))
        {
            return Err(bad(
                "RETIRED_KMS_KEY_IDS",
                "must list key ARNs or key ids, not aliases (an alias may move to another key)",
            ));
        }
        let drill_sample = optional(get, "DRILL_SAMPLE", 1, 500)?;
        Ok(Config {
            backup_mode,
            kms_key_id,
            retired_kms_key_ids,
            backup_queue_url: get("BACKUP_QUEUE_URL"),
            custodian_api_key_secret_arn: get("CUSTODIAN_API_KEY_SECRET_ARN"),
            outcome_event_bus: get("OUTCOME_EVENT_BUS"),
            max_receive_count: optional(get, "MAX_RECEIVE_COUNT", 1, 1000)?,
            portal_rate: PortalRateConfig::from_env(&get)?,
            drill_sample,
            table_name,
            portal_mpc_url,
            portal_api_url,
            max_concurrency,
            require_sealed_input,
            allow_plaintext_restore,
            portal_timeouts: HttpTimeouts {
                connect: Duration::from_millis(connect as u64),
                request: Duration::from_millis(request as u64),
            },
        })
    }

    /// How requests are read.
    pub fn request_policy(&self) -> RequestPolicy {
        RequestPolicy {
            default_mode: self.backup_mode,
            require_sealed: self.require_sealed_input,
        }
    }

    /// Whether every Portal URL is https (loopback http is allowed only for local runs).
    pub fn https_only(&self) -> bool {
        self.portal_mpc_url.starts_with("https://") && self.portal_api_url.starts_with("https://")
    }
}

fn valid_table_name(t: &str) -> bool {
    (3..=255).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn number(
    v: Option<String>,
    var: &'static str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            var,
            format!("must be a whole number from {min} to {max}"),
        )),
    }
}

/// Portal URLs are https; plain http only to a loopback host, for the local simulator.
fn portal_url(v: Option<String>, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let raw = v.unwrap_or_else(|| default.to_owned());
    let url = reqwest::Url::parse(&raw).map_err(|e| bad(var, format!("is not a URL ({e})")))?;
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad(
            var,
            "must not carry credentials, a query or a fragment",
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(bad(
                var,
                "must be https (plain http is allowed only to a loopback host)",
            ));
        }
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests;
