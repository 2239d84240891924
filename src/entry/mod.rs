//! The Lambda entry: recognise the event, run the workflow, encode the trigger's answer.
//!
//! One binary serves the three triggers. The shape is told from the event itself:
//! `Records` → SQS; `requestContext` → API Gateway (HTTP API 2.0 or REST proxy 1.0); an object
//! with the message's fields → direct invoke. Anything else is a clear function error.

pub mod api;
pub mod direct;
pub mod http;
pub mod metrics;
pub mod operator;
pub mod outcome;
pub mod sqs;
pub mod webhook;

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroize;

use crate::domain::request::{BackupRequest, FIELDS, RequestPolicy};
use crate::ports::catalogue::Catalogue;
use crate::ports::checkpoints::Checkpoints;
use crate::ports::drill::DrillTable;
use crate::ports::eject::EjectPortal;
use crate::ports::envelope::Envelope;
use crate::ports::outcome_events::OutcomeEvents;
use crate::ports::portal::{Portal, PortalError};
use crate::ports::rate_limit::BudgetMeter;
use crate::ports::redelivery::Redelivery;
use crate::ports::rotation::{Rewrap, RotationTable};
use crate::ports::store::BackupStore;
use crate::workflow::backup::{BackupService, Invocation, Outcome, RunStats};
use crate::workflow::drill::DrillService;
use crate::workflow::eject::EjectService;
use crate::workflow::error::{BackupError, Cause, Step};
use crate::workflow::restore::RestoreService;
use crate::workflow::retry::Deadline;
use crate::workflow::rotation::RotationService;

/// Which of the two functions over the backup table and key this process is: the backup
/// function answers backups only; the operator function (its own role, invoked by the recovery
/// role and the drill schedule) answers operator actions only, so the right to back up is never
/// the right to restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// SQS, `POST /backups`, a backup by direct invoke.
    #[default]
    Backup,
    /// list, verify, restore, recover, rotate, drill; the operator routes.
    Operator,
}

/// What every entry needs to run a request.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// Which function this is.
    pub role: Role,
    /// How requests are read.
    pub policy: RequestPolicy,
    /// When the invocation must have answered.
    pub deadline: Deadline,
    /// Lambda's request id, for leases and logs.
    pub request_id: &'a str,
    /// Who called, where the trigger says (the API's IAM caller); logged by restore and recover.
    pub caller: Option<&'a str>,
    /// Where outcome events go, if this deployment publishes them.
    pub events: Option<&'a dyn OutcomeEvents>,
    /// Whether a transient failure now is the last delivery (SQS moves the message to its DLQ
    /// next): it is then told as failed for good.
    pub final_attempt: bool,
    /// Whether this is the first delivery: a permanent failure is told once, on its first
    /// delivery, not again on each redelivery SQS makes before the DLQ.
    pub first_attempt: bool,
    /// Whether a failure that only waits for Portal's budget is sent again to the queue rather
    /// than failed (the last delivery of a queue that takes delays): it is then not told as
    /// failed, since it is not.
    pub resends_waits: bool,
}

/// Parses one request and runs it; logs the outcome (and each failure) as one structured line.
pub async fn run_request<P, E, S>(
    service: &BackupService<P, E, S>,
    ctx: Ctx<'_>,
    body: &[u8],
) -> Result<Outcome, BackupError>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Checkpoints,
{
    let mut stats = RunStats::default();
    let result = match BackupRequest::parse(body, ctx.policy) {
        Ok(request) => {
            tracing::Span::current().record("client_id", request.client_id.as_str());
            let invocation = Invocation::new(ctx.deadline, ctx.request_id);
            service.run(&request, &invocation, &mut stats).await
        }
        Err(e) => Err(e.into()),
    };
    if let Some(events) = ctx.events {
        let final_attempt = failed_for_good(&ctx, &result);
        outcome::publish(events, ctx.first_attempt, final_attempt, body, &result).await;
    }
    // Waiting for the stack's Portal budget is pacing, not a failure: one info line, and no
    // BackupFailures count (PortalRateHeld counts it).
    let held =
        matches!(&result, Err(e) if matches!(e.cause, Cause::Portal(PortalError::Held { .. })));
    match &result {
        Ok(outcome) => tracing::info!(
            client_id = %outcome.client_id,
            backup_mode = outcome.backup_mode,
            secp256k1_backup_share_pair_id = %outcome.backup_share_pair_ids[0],
            ed25519_backup_share_pair_id = %outcome.backup_share_pair_ids[1],
            retries = stats.retries,
            resumed_from = stats.resumed_from.map(|s| s.as_str()),
            called_backup = stats.called_backup,
            "backup completed"
        ),
        Err(err) if held => tracing::info!(
            step = err.step.as_str(),
            code = failure(err).code,
            wait_ms = portal_wait(err).map_or(0, |w| w.as_millis() as u64),
            "backup waits for a Portal slot"
        ),
        Err(err) => log_failure(err),
    }
    if !held {
        crate::entry::metrics::emit(result.as_ref().map(|_| ()), &stats);
    }
    result
}

/// How long a failure asks to wait, when it failed only for want of a Portal slot: the stack's
/// limiter, or Portal's own 429 (its `Retry-After`, else a minute, Portal's window).
pub(crate) fn portal_wait(err: &BackupError) -> Option<Duration> {
    match &err.cause {
        Cause::Portal(PortalError::Held { wait, .. }) => Some(*wait),
        Cause::Portal(PortalError::Status {
            status: 429,
            retry_after,
            ..
        }) => Some(retry_after.unwrap_or(Duration::from_secs(60))),
        _ => None,
    }
}

/// Whether a transient failure now is the message's last: its last delivery, unless it only
/// waits for Portal's budget and is sent to the queue again (then it is not failed at all).
fn failed_for_good(ctx: &Ctx<'_>, result: &Result<Outcome, BackupError>) -> bool {
    let resent = ctx.resends_waits && result.as_ref().err().and_then(portal_wait).is_some();
    ctx.final_attempt && !resent
}

/// One structured line per failure: step, kind, field at fault; the error text names no secret.
pub fn log_failure(err: &BackupError) {
    tracing::error!(
        step = err.step.as_str(),
        kind = err.kind(),
        code = failure(err).code,
        field = err.field(),
        error = %err,
        "backup failed"
    );
}

/// A context for tests: self-managed by default, no deadline.
#[cfg(test)]
pub(crate) fn test_ctx() -> Ctx<'static> {
    Ctx {
        role: Role::Backup,
        policy: RequestPolicy::new(crate::domain::model::BackupMode::SelfManaged),
        deadline: Deadline::none(),
        request_id: "test-request",
        caller: None,
        events: None,
        final_attempt: false,
        first_attempt: true,
        resends_waits: false,
    }
}

/// The trigger an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An SQS batch.
    Sqs,
    /// API Gateway HTTP API, payload format 2.0.
    HttpApi,
    /// API Gateway REST API proxy integration (payload format 1.0).
    RestApi,
    /// A bare backup request (`sam local invoke`, `cargo lambda invoke`, Step Functions).
    Direct,
    /// An operator action (`{"action": "list" | "verify" | "restore", "clientId"}`, or
    /// `{"action": "rotate", …}`).
    Action,
}

/// The top-level keys that tell the shapes apart; everything else is skipped unread.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Records")]
    records: Option<serde::de::IgnoredAny>,
    #[serde(rename = "requestContext")]
    request_context: Option<serde::de::IgnoredAny>,
    version: Option<String>,
    #[serde(rename = "httpMethod")]
    http_method: Option<serde::de::IgnoredAny>,
    #[serde(rename = "clientId")]
    client_id: Option<serde::de::IgnoredAny>,
    #[serde(rename = "generateResponse")]
    generate_response: Option<serde::de::IgnoredAny>,
    action: Option<serde::de::IgnoredAny>,
}

/// Tells which trigger sent `event`, reading only its top-level keys.
pub fn recognise(event: &str) -> Result<Trigger, Diagnostic> {
    let probe: Probe = serde_json::from_str(event).map_err(|_| unrecognised(event))?;
    Ok(match probe {
        Probe {
            records: Some(_), ..
        } => Trigger::Sqs,
        Probe {
            request_context: Some(_),
            version: Some(v),
            ..
        } if v == "2.0" => Trigger::HttpApi,
        Probe {
            request_context: Some(_),
            http_method: Some(_),
            ..
        } => Trigger::RestApi,
        Probe {
            request_context: None,
            action: Some(_),
            ..
        } => Trigger::Action,
        Probe {
            request_context: None,
            client_id,
            generate_response,
            ..
        } if client_id.is_some() || generate_response.is_some() || direct_keys_only(event) => {
            Trigger::Direct
        }
        _ => return Err(unrecognised(event)),
    })
}

/// Whether every top-level key of an object is a message field (an incomplete direct request
/// then gets a field-level error rather than "unrecognised").
fn direct_keys_only(event: &str) -> bool {
    serde_json::from_str::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(event)
        .is_ok_and(|m| !m.is_empty() && m.keys().all(|k| FIELDS.contains(&k.as_str())))
}

/// An event of a recognised shape that does not decode as that trigger's type.
pub(crate) fn decode(what: &str, e: serde_json::Error) -> Diagnostic {
    Diagnostic {
        error_type: "InvalidEvent".into(),
        error_message: format!("the {what} event could not be decoded ({e})"),
    }
}

fn unrecognised(event: &str) -> Diagnostic {
    let keys =
        serde_json::from_str::<std::collections::BTreeMap<String, serde::de::IgnoredAny>>(event)
            .map(|m| {
                m.keys()
                    .take(8)
                    .map(|k| k.chars().take(40).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|_| "not a JSON object".to_owned());
    Diagnostic {
        error_type: "UnrecognizedEvent".into(),
        error_message: format!(
            "the event is not an SQS batch, an API Gateway request or a backup request (top-level keys: {keys})"
        ),
    }
}

/// What the function answers, in the trigger's own shape.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `{"batchItemFailures": [...]}`.
    Sqs(aws_lambda_events::event::sqs::SqsBatchResponse),
    /// An HTTP API response.
    HttpApi(aws_lambda_events::apigw::ApiGatewayV2httpResponse),
    /// A REST API proxy response.
    RestApi(aws_lambda_events::apigw::ApiGatewayProxyResponse),
    /// The backup's outcome.
    Direct(Outcome),
    /// An operator action's answer (list, verify, restore).
    Action(crate::workflow::restore::ActionAnswer),
    /// A key rotation's answer: counts and where to continue.
    Rotate(crate::workflow::rotation::RotateAnswer),
    /// A restore drill's answer: counts, failures, the cycle.
    Drill(crate::workflow::drill::DrillAnswer),
    /// A custody drill's answer: counts, failures, the cycle.
    CustodyDrill(crate::workflow::custody::CustodyDrillAnswer),
    /// A Portal-managed eject's answer: both halves sealed, or completed.
    Eject(crate::workflow::eject::EjectAnswer),
}

/// The services an invocation can reach, each over the same adapters.
#[derive(Debug, Clone)]
pub struct Services<P, E, S> {
    /// The backup workflow (SQS, the API's `POST /backups`, direct invoke).
    pub backup: BackupService<P, E, S>,
    /// List, verify and restore (operator actions and routes).
    pub restore: RestoreService<P, E, S>,
    /// Key rotation (an operator action).
    pub rotation: RotationService<E, S>,
    /// Restore drills (an operator action, on a schedule).
    pub drill: DrillService<E, S>,
    /// Portal-managed eject (operator actions).
    pub eject: EjectService<P, E>,
}

impl<P, E, S> Services<P, E, S>
where
    P: Portal + EjectPortal + Clone,
    E: Envelope + Clone,
    S: BackupStore + Checkpoints + Clone,
{
    /// Every service over one set of adapters (clients are shared, not rebuilt).
    pub fn new(portal: P, envelope: E, store: S) -> Self {
        Self {
            backup: BackupService::new(portal.clone(), envelope.clone(), store.clone()),
            restore: RestoreService::new(portal.clone(), envelope.clone(), store.clone()),
            rotation: RotationService::new(envelope.clone(), store.clone()),
            drill: DrillService::new(envelope.clone(), store),
            eject: EjectService::new(portal, envelope),
        }
    }
}

/// Everything an invocation needs, built once per process (see `app`).
#[derive(Debug)]
pub struct Handler<P, E, S> {
    /// Which function this is.
    pub role: Role,
    /// The one drill sample the operator function accepts (`DRILL_SAMPLE`: the schedule's fixed
    /// payload); `None` accepts any.
    pub drill_sample: Option<u32>,
    /// The services.
    pub services: Services<P, E, S>,
    /// How requests are read.
    pub policy: RequestPolicy,
    /// How many messages of one SQS batch run at once.
    pub max_concurrency: usize,
    /// Where outcome events go (`OUTCOME_EVENT_BUS`); `None`: none are published.
    pub events: Option<std::sync::Arc<dyn OutcomeEvents>>,
    /// The queue's `maxReceiveCount` (`MAX_RECEIVE_COUNT`): a message received that many times
    /// goes to the DLQ after a failure.
    pub max_receive_count: Option<u32>,
    /// The stack's Portal budget, whose waits each invocation reports as metrics.
    pub budget: Option<std::sync::Arc<dyn BudgetMeter>>,
    /// The backup queue, where a message waiting for Portal's budget goes back.
    pub redelivery: Option<std::sync::Arc<dyn Redelivery>>,
}

/// Handles any invocation. The raw event is read once per trigger and wiped afterwards: it holds
/// API keys and signing shares.
pub async fn handle<P, E, S>(
    app: &Handler<P, E, S>,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Answer, Diagnostic>
where
    P: Portal + EjectPortal,
    E: Envelope + Rewrap,
    S: BackupStore + Checkpoints + Catalogue + RotationTable + DrillTable,
{
    let mut raw: Box<str> = event.payload.into();
    let ctx = Ctx {
        role: app.role,
        policy: app.policy,
        deadline: Deadline::from_epoch_ms(event.context.deadline),
        request_id: &event.context.request_id,
        caller: None,
        events: app.events.as_deref(),
        final_attempt: false,
        first_attempt: true,
        resends_waits: false,
    };
    let result = dispatch(app, ctx, &raw).await;
    raw.zeroize();
    if let Some(budget) = &app.budget {
        metrics::emit_budget(&budget.take_stats());
    }
    result
}

async fn dispatch<P, E, S>(
    app: &Handler<P, E, S>,
    ctx: Ctx<'_>,
    raw: &str,
) -> Result<Answer, Diagnostic>
where
    P: Portal + EjectPortal,
    E: Envelope + Rewrap,
    S: BackupStore + Checkpoints + Catalogue + RotationTable + DrillTable,
{
    let services = &app.services;
    let trigger = recognise(raw)?;
    match (app.role, trigger) {
        (Role::Operator, Trigger::Sqs | Trigger::Direct) => return Err(wrong_function()),
        (Role::Backup, Trigger::Action) => return Err(operator_action_refused(raw)),
        _ => {}
    }
    match trigger {
        Trigger::Sqs => {
            let event = serde_json::from_str(raw).map_err(|e| decode("SQS", e))?;
            let answer = sqs::handle_sqs(
                &services.backup,
                ctx,
                app.max_concurrency,
                app.max_receive_count,
                app.redelivery.as_deref(),
                event,
            )
            .await?;
            Ok(Answer::Sqs(answer))
        }
        Trigger::HttpApi => {
            let request = serde_json::from_str(raw).map_err(|e| decode("HTTP API", e))?;
            Ok(Answer::HttpApi(
                api::handle_http_api(services, ctx, request).await,
            ))
        }
        Trigger::RestApi => {
            let request = serde_json::from_str(raw).map_err(|e| decode("REST API", e))?;
            Ok(Answer::RestApi(
                api::handle_rest_api(services, ctx, request).await,
            ))
        }
        Trigger::Direct => Ok(Answer::Direct(
            direct::handle_direct(&services.backup, ctx, raw.as_bytes()).await?,
        )),
        Trigger::Action => {
            direct::handle_action(services, ctx, app.drill_sample, raw.as_bytes()).await
        }
    }
}

/// A backup sent to the operator function.
fn wrong_function() -> Diagnostic {
    Diagnostic {
        error_type: "WrongFunction".into(),
        error_message: "this is the operator function: it runs operator actions only; send \
                        backups to the backup function (its queue, POST /backups, or a direct \
                        invoke of <stack>-backup)"
            .into(),
    }
}

/// An operator action sent to the backup function, refused by name.
fn operator_action_refused(raw: &str) -> Diagnostic {
    #[derive(Deserialize)]
    struct Probe {
        action: Option<String>,
    }
    let action: String = serde_json::from_str::<Probe>(raw)
        .ok()
        .and_then(|p| p.action)
        .map(|a| {
            a.chars()
                .take(32)
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .unwrap_or_default();
    Diagnostic {
        error_type: "OperatorActionRefused".into(),
        error_message: format!(
            "`{action}` is an operator action: it runs in the operator function (<stack>-operator, \
             invoked by the recovery role and the drill schedule); the backup function answers \
             backups only"
        ),
    }
}

/// How a failed backup is presented to a caller that waits for it (API, direct invoke).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status for API Gateway.
    pub status: u16,
    /// Stable code: the API's `error.code` and the direct invoke's `errorType`.
    pub code: &'static str,
    /// Seconds the caller should wait before retrying, when retrying can help.
    pub retry_after: Option<u64>,
}

/// Seconds to suggest when an upstream is briefly unavailable and did not say.
const DEFAULT_RETRY_AFTER: u64 = 5;
/// Seconds to suggest after Portal's rate limit (50 requests a minute) when it did not say.
const RATE_LIMIT_RETRY_AFTER: u64 = 60;

/// A failed backup or action as a function error (direct invoke): its stable code as
/// `errorType`, so Step Functions can `Retry` on the transient ones, and its display (never a
/// value) as `errorMessage`.
impl From<BackupError> for Diagnostic {
    fn from(err: BackupError) -> Self {
        Diagnostic {
            error_type: failure(&err).code.into(),
            error_message: err.to_string(),
        }
    }
}

/// Classifies an error, the one place an error becomes a status and a code: bad input 400, the client key refused 401/403, Portal refusing the
/// request 400, upstream failures 502/503/504 (with `Retry-After` when retrying can help).
pub fn failure(err: &BackupError) -> Failure {
    let f = |status, code, retry_after| Failure {
        status,
        code,
        retry_after,
    };
    match &err.cause {
        Cause::Input(_) => f(400, "INVALID_INPUT", None),
        Cause::Portal(PortalError::Status {
            status,
            retry_after,
            ..
        }) => {
            let after = retry_after.map(|d| d.as_secs());
            match *status {
                401 | 403 => f(*status, "PORTAL_UNAUTHORIZED", None),
                429 => f(
                    503,
                    "PORTAL_RATE_LIMITED",
                    Some(after.unwrap_or(RATE_LIMIT_RETRY_AFTER)),
                ),
                408 => f(
                    504,
                    "PORTAL_TIMEOUT",
                    Some(after.unwrap_or(DEFAULT_RETRY_AFTER)),
                ),
                s if s >= 500 => f(
                    502,
                    "PORTAL_UNAVAILABLE",
                    Some(after.unwrap_or(DEFAULT_RETRY_AFTER)),
                ),
                // Portal refused what the caller sent (e.g. signing shares it did not issue).
                _ if err.step == Step::Backup => f(400, "PORTAL_REJECTED", None),
                _ => f(502, "PORTAL_REJECTED", None),
            }
        }
        Cause::Portal(PortalError::Transport { timeout: true, .. }) => {
            f(504, "PORTAL_TIMEOUT", Some(DEFAULT_RETRY_AFTER))
        }
        Cause::Portal(PortalError::Transport { .. }) => {
            f(502, "PORTAL_UNREACHABLE", Some(DEFAULT_RETRY_AFTER))
        }
        Cause::Portal(PortalError::Contract { .. }) => f(502, "PORTAL_CONTRACT", None),
        // The stack's own Portal budget: the call waits for a free slot.
        Cause::Portal(PortalError::Held { wait, .. }) => f(
            503,
            "PORTAL_RATE_HELD",
            Some(wait.as_secs_f64().ceil() as u64),
        ),
        Cause::Portal(PortalError::Limiter { .. }) => {
            f(503, "DEPENDENCY_UNAVAILABLE", Some(DEFAULT_RETRY_AFTER))
        }
        // A sealed generate response that does not open is the sender's problem.
        Cause::Envelope(_) if err.step == Step::Unseal && !err.is_transient() => {
            f(400, "INVALID_SEALED_INPUT", None)
        }
        Cause::Envelope(_) | Cause::Store(_) if err.is_transient() => {
            f(503, "DEPENDENCY_UNAVAILABLE", Some(DEFAULT_RETRY_AFTER))
        }
        Cause::Envelope(_) | Cause::Store(_) => f(502, "DEPENDENCY_FAILED", None),
        Cause::Mismatch(_) => f(502, "BACKUP_NOT_VERIFIED", None),
        Cause::NoBackup(_) => f(404, "NO_COMPLETED_BACKUP", None),
        Cause::Deadline(_) => f(503, "DEADLINE", Some(DEFAULT_RETRY_AFTER)),
        Cause::InProgress => f(409, "IN_PROGRESS", Some(DEFAULT_RETRY_AFTER)),
        Cause::IdempotencyKeyReused(_) => f(422, "IDEMPOTENCY_KEY_REUSED", None),
        Cause::ClientMismatch { .. } => f(422, "CLIENT_MISMATCH", None),
        Cause::UnreadableCheckpoints(_) => f(409, "UNREADABLE_CHECKPOINTS", None),
        Cause::RecoveryInterrupted(_) => f(409, "RECOVERY_INTERRUPTED", None),
        Cause::EjectNotConfigured => f(501, "EJECT_NOT_CONFIGURED", None),
        Cause::KeySource(_) if err.is_transient() => {
            f(503, "DEPENDENCY_UNAVAILABLE", Some(DEFAULT_RETRY_AFTER))
        }
        Cause::KeySource(_) => f(502, "DEPENDENCY_FAILED", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_sent_again_to_wait_is_not_failed_for_good() {
        let portal = |status| {
            Err(BackupError::new(
                Step::Backup,
                PortalError::Status {
                    call: "POST /v1/backup",
                    status,
                    error_id: None,
                    retry_after: None,
                },
            ))
        };
        let last = Ctx {
            final_attempt: true,
            resends_waits: true,
            ..test_ctx()
        };
        assert!(!failed_for_good(&last, &portal(429)), "sent again to wait");
        assert!(failed_for_good(&last, &portal(503)), "503 is not a wait");
        let held = Err(BackupError::new(
            Step::Backup,
            PortalError::Held {
                call: "POST /v1/backup",
                wait: Duration::from_secs(3),
            },
        ));
        assert!(!failed_for_good(&last, &held));
        let no_queue = Ctx {
            resends_waits: false,
            ..last
        };
        assert!(
            failed_for_good(&no_queue, &portal(429)),
            "nowhere to send it"
        );
        assert!(
            !failed_for_good(&test_ctx(), &portal(503)),
            "not the last delivery"
        );
    }

    #[test]
    fn recognises_each_shape() {
        assert_eq!(recognise(r#"{"Records": []}"#).unwrap(), Trigger::Sqs);
        assert_eq!(
            recognise(r#"{"version": "2.0", "requestContext": {}, "rawPath": "/backups"}"#)
                .unwrap(),
            Trigger::HttpApi
        );
        assert_eq!(
            recognise(r#"{"httpMethod": "POST", "requestContext": {}, "path": "/backups"}"#)
                .unwrap(),
            Trigger::RestApi
        );
        assert_eq!(
            recognise(r#"{"clientId": "c", "generateResponse": {}}"#).unwrap(),
            Trigger::Direct
        );
        assert_eq!(
            recognise(r#"{"clientApiKey": "k"}"#).unwrap(),
            Trigger::Direct
        );
        assert_eq!(
            recognise(r#"{"action": "restore", "clientId": "c"}"#).unwrap(),
            Trigger::Action
        );
        assert_eq!(
            recognise(r#"{"action": "rotate", "pageSize": 10}"#).unwrap(),
            Trigger::Action
        );
    }

    #[test]
    fn unknown_shapes_are_clear_errors_naming_keys_not_values() {
        for event in [
            r#"{"detail-type": "x", "source": "aws.events"}"#,
            "[1,2]",
            "3",
            "{}",
            r#"{"requestContext": {}}"#,
        ] {
            let e = recognise(event).unwrap_err();
            assert_eq!(e.error_type, "UnrecognizedEvent", "{event}");
        }
        let e = recognise(r#"{"secretish": "sk_live_123"}"#).unwrap_err();
        assert!(e.error_message.contains("secretish") && !e.error_message.contains("sk_live_123"));
    }
}
