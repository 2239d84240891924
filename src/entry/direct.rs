//! Direct invoke: the bare message JSON in, the outcome out; failures are function errors whose
//! `errorType` is a stable code (Step Functions can `Retry` on the transient ones). Operator
//! actions (list, verify, restore: see `restore`; rotate: see `rotation`) come the same way.

use lambda_runtime::Diagnostic;

use super::{Ctx, Services, run_request};
use crate::ports::catalogue::Catalogue;
use crate::ports::checkpoints::Checkpoints;
use crate::ports::drill::DrillTable;
use crate::ports::eject::EjectPortal;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::rotation::{Rewrap, RotationTable};
use crate::ports::store::BackupStore;
use crate::workflow::backup::{BackupService, Outcome};
use crate::workflow::drill::{DrillRequest, is_drill};
use crate::workflow::eject::{EjectRequest, is_eject};
use crate::workflow::restore::{ActionAnswer, ActionRequest, RestoreService};
use crate::workflow::rotation::{RotateRequest, is_rotate};

/// Runs one backup request given as the whole payload.
pub async fn handle_direct<P, E, S>(
    service: &BackupService<P, E, S>,
    ctx: Ctx<'_>,
    payload: &[u8],
) -> Result<Outcome, Diagnostic>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Checkpoints,
{
    run_request(service, ctx, payload)
        .await
        .map_err(Diagnostic::from)
}

/// Who asked for an operator action, for its audit line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Audit<'a> {
    /// `invoke` or `api`.
    pub via: &'static str,
    /// The IAM caller, where the trigger names one (the API's authorizer).
    pub caller: Option<&'a str>,
}

/// What the audit line says when the trigger names no caller: Lambda's invoke context carries
/// none, and CloudTrail's Lambda data events record who invoked.
const UNNAMED_CALLER: &str = "not given by Lambda for a direct invoke: see CloudTrail data events";

/// Where an event's caller comes from, said beside it in every audit line.
const CLAIMED_CALLER: &str =
    "claimed by the event (API Gateway's authorizer); verified in the API's access log";

/// Runs list, verify, restore or recover, with one audit line per action (restore and recover
/// read key material out of a backup: they are logged whether answered or refused, and each
/// answered one is counted in the `Restores` metric). The line names the action, the client,
/// `via` and the caller, never the content.
pub(crate) async fn act_audited<P, E, S>(
    service: &RestoreService<P, E, S>,
    request: &ActionRequest,
    audit: Audit<'_>,
) -> Result<ActionAnswer, crate::workflow::error::BackupError>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Catalogue,
{
    tracing::Span::current().record("client_id", request.client_id.as_str());
    let answer = service.act(request).await;
    let caller = audit.caller.unwrap_or(UNNAMED_CALLER);
    // The caller an API event names is the event's word: whoever may invoke the function could
    // have written it. API Gateway's access log is where the verified caller is.
    let caller_source = if audit.caller.is_some() {
        CLAIMED_CALLER
    } else {
        "none"
    };
    let action = request.action.as_str();
    match &answer {
        Ok(_) if request.action.restores() => {
            super::metrics::emit_restore(action);
            tracing::warn!(action, client_id = %request.client_id, via = audit.via, caller, caller_source, "backup key material answered (sealed unless plaintext restore is allowed)");
        }
        Ok(_) => {
            tracing::info!(action, client_id = %request.client_id, via = audit.via, caller, caller_source, "operator action answered");
        }
        Err(e) if request.action.restores() => {
            tracing::warn!(action, client_id = %request.client_id, via = audit.via, caller, caller_source, code = e.kind(), "restore refused or failed");
        }
        Err(_) => {}
    }
    answer
}

/// Runs an operator action (list, verify, restore, rotate); its failures are function errors like
/// a backup's.
pub async fn handle_action<P, E, S>(
    services: &Services<P, E, S>,
    ctx: Ctx<'_>,
    drill_sample: Option<u32>,
    payload: &[u8],
) -> Result<super::Answer, Diagnostic>
where
    P: Portal + EjectPortal,
    E: Envelope + Rewrap,
    S: BackupStore + Checkpoints + Catalogue + RotationTable + DrillTable,
{
    let result = if is_eject(payload) {
        match EjectRequest::parse(payload) {
            Ok(request) => {
                tracing::Span::current().record("client_id", request.client_id.as_str());
                services.eject.act(&request).await.map(super::Answer::Eject)
            }
            Err(e) => Err(e.into()),
        }
    } else if is_drill(payload) {
        match DrillRequest::parse(payload) {
            // The schedule's payload is fixed: any other drill is not the schedule's.
            Ok(request) if drill_sample.is_some_and(|n| n != request.sample) => {
                Err(crate::domain::request::InputError {
                    field: "sample".into(),
                    problem: "is not this stack's drill sample (DRILL_SAMPLE)".into(),
                }
                .into())
            }
            Ok(request) => {
                let answer = services.drill.run(request, &ctx.deadline).await;
                // A drill that could not run counts as a failure, never as silence.
                super::metrics::emit_drill(answer.as_ref().ok());
                answer.map(super::Answer::Drill)
            }
            Err(e) => Err(e.into()),
        }
    } else if is_rotate(payload) {
        match RotateRequest::parse(payload) {
            Ok(request) => services
                .rotation
                .rotate_keys(&request, &ctx.deadline)
                .await
                .map(super::Answer::Rotate),
            Err(e) => Err(e.into()),
        }
    } else {
        match ActionRequest::parse(payload) {
            Ok(request) => act_audited(
                &services.restore,
                &request,
                Audit {
                    via: "invoke",
                    caller: ctx.caller,
                },
            )
            .await
            .map(super::Answer::Action),
            Err(e) => Err(e.into()),
        }
    };
    result.map_err(|err| {
        super::log_failure(&err);
        Diagnostic::from(err)
    })
}
