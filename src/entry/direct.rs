//! Direct invoke: the bare message JSON in, the outcome out; failures are function errors whose
//! `errorType` is a stable code (Step Functions can `Retry` on the transient ones).

use lambda_runtime::Diagnostic;

use super::{Ctx, failure, run_request};
use crate::backup::{BackupService, Outcome};
use crate::envelope::Envelope;
use crate::idempotency::Checkpoints;
use crate::portal::Portal;
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
