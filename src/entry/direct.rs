//! Direct invoke: the bare message JSON in, the outcome out; failures are function errors whose
//! `errorType` is a stable code (Step Functions can `Retry` on the transient ones).

use lambda_runtime::Diagnostic;

use super::failure;
use crate::backup::{BackupService, Outcome};
use crate::entry::sqs::log_failure;
use crate::envelope::Envelope;
use crate::portal::Portal;
use crate::request::{BackupRequest, RequestPolicy};
use crate::store::BackupStore;

/// Runs one backup request given as the whole payload.
pub async fn handle_direct<P, E, S>(
    service: &BackupService<P, E, S>,
    policy: RequestPolicy,
    payload: &[u8],
) -> Result<Outcome, Diagnostic>
where
    P: Portal,
    E: Envelope,
    S: BackupStore,
{
    let result = match BackupRequest::parse(payload, policy) {
        Ok(request) => service.back_up(&request).await,
        Err(e) => Err(e.into()),
    };
    result.map_err(|err| {
        log_failure(&err);
        Diagnostic {
            error_type: failure(&err).code.into(),
            error_message: err.to_string(),
        }
    })
}
