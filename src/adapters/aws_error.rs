//! What the KMS and DynamoDB adapters share: how an SDK error is classified and described.

use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::domain::text::truncate;

/// Service error codes that mean "slow down or try again", across KMS and DynamoDB.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "InternalServerError",
    "KMSInternalException",
    "DependencyTimeoutException",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// Whether an SDK error may go away on retry (after the SDK's own retries were spent).
pub(crate) fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            status >= 500
                || status == 429
                || e.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    }
}

/// The error code (e.g. `NotFoundException`), if the service sent one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// A one-line description with the whole source chain; SDK errors never carry request payloads.
pub(crate) fn describe<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    truncate(&DisplayErrorContext(err).to_string(), 400)
}
