//! Direct invoke: the bare message JSON in, the outcome out; failures are function errors whose
//! `errorType` is a stable code (Step Functions can `Retry` on the transient ones). Operator
//! actions (list, verify, restore: see `restore`; rotate: see `rotation`) come the same way.

use lambda_runtime::Diagnostic;

use super::{Ctx, failure, run_request};
use crate::backup::{BackupService, Outcome};
use crate::envelope::Envelope;
use crate::idempotency::Checkpoints;
use crate::portal::Portal;
use crate::restore::{ActionAnswer, ActionRequest, Catalogue};
use crate::rotation::{Rewrap, RotateRequest, RotationTable, is_rotate};
use crate::store::BackupStore;

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
        .map_err(|err| Diagnostic {
            error_type: failure(&err).code.into(),
            error_message: err.to_string(),
        })
}

/// Runs list, verify or restore, with one audit line per answered action (a restore hands out
/// key material); the line names the action, the client and `via`, never the content.
pub(crate) async fn act_audited<P, E, S>(
    service: &BackupService<P, E, S>,
    request: &ActionRequest,
    via: &'static str,
) -> Result<ActionAnswer, crate::error::BackupError>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Checkpoints + Catalogue,
{
    tracing::Span::current().record("client_id", request.client_id.as_str());
    let answer = service.act(request).await;
    if answer.is_ok() {
        tracing::info!(action = ?request.action, client_id = %request.client_id, via, "operator action answered");
    }
    answer
}

/// Runs an operator action (list, verify, restore, rotate); its failures are function errors like
/// a backup's.
pub async fn handle_action<P, E, S>(
    service: &BackupService<P, E, S>,
    ctx: Ctx<'_>,
    payload: &[u8],
) -> Result<ActionAnswer, Diagnostic>
where
    P: Portal,
    E: Envelope + Rewrap,
    S: BackupStore + Checkpoints + Catalogue + RotationTable,
{
    let result = if is_rotate(payload) {
        match RotateRequest::parse(payload) {
            Ok(request) => service
                .rotate_keys(&request, &ctx.deadline)
                .await
                .map(ActionAnswer::Rotate),
            Err(e) => Err(e.into()),
        }
    } else {
        match ActionRequest::parse(payload) {
            Ok(request) => act_audited(service, &request, "invoke").await,
            Err(e) => Err(e.into()),
        }
    };
    result.map_err(|err| {
        super::log_failure(&err);
        Diagnostic {
            error_type: failure(&err).code.into(),
            error_message: err.to_string(),
        }
    })
}
