//! Direct invoke: the bare message JSON in, the outcome out; failures are function errors whose
//! `errorType` is a stable code (Step Functions can `Retry` on the transient ones). Operator
//! actions (list, verify, restore: see `restore`; rotate: see `rotation`) come the same way.

use lambda_runtime::Diagnostic;

use super::{Ctx, Services, run_request};
use crate::ports::catalogue::Catalogue;
use crate::ports::checkpoints::Checkpoints;
use crate::ports::envelope::Envelope;
use crate::ports::portal::Portal;
use crate::ports::rotation::{Rewrap, RotationTable};
use crate::ports::store::BackupStore;
use crate::workflow::backup::{BackupService, Outcome};
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

/// Runs list, verify or restore, with one audit line per answered action (a restore hands out
/// key material); the line names the action, the client and `via`, never the content.
pub(crate) async fn act_audited<P, E, S>(
    service: &RestoreService<P, E, S>,
    request: &ActionRequest,
    via: &'static str,
) -> Result<ActionAnswer, crate::workflow::error::BackupError>
where
    P: Portal,
    E: Envelope,
    S: BackupStore + Catalogue,
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
    services: &Services<P, E, S>,
    ctx: Ctx<'_>,
    payload: &[u8],
) -> Result<super::Answer, Diagnostic>
where
    P: Portal,
    E: Envelope + Rewrap,
    S: BackupStore + Checkpoints + Catalogue + RotationTable,
{
    let result = if is_rotate(payload) {
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
            Ok(request) => act_audited(&services.restore, &request, "invoke")
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
