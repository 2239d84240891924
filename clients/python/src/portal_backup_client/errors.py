"""Errors of this package.

A message names the field at fault and what is wrong with it, never a value: no share, API key
or client id is ever quoted, so an error can be logged as it is.
"""

from __future__ import annotations

from typing import Optional

#: The request would be refused by the function (the function's own code for bad input).
INVALID_INPUT = "INVALID_INPUT"
#: The signing shares name another client than ``clientId``, or none (the function's code).
CLIENT_MISMATCH = "CLIENT_MISMATCH"
#: The client was built with settings that cannot work (a key alias, no destination, ...).
INVALID_CONFIG = "INVALID_CONFIG"
#: KMS or the AWS Encryption SDK could not seal.
SEAL_FAILED = "SEAL_FAILED"
#: SQS, Lambda or the function's API refused the message, or could not be reached.
SEND_FAILED = "SEND_FAILED"
#: ``wait_for_outcome`` gave up.
TIMEOUT = "TIMEOUT"

#: The function's codes that retrying later may fix (``src/entry/mod.rs``, ``failure``).
RETRYABLE_CODES = frozenset(
    {
        "PORTAL_RATE_HELD",
        "PORTAL_RATE_LIMITED",
        "PORTAL_TIMEOUT",
        "PORTAL_UNAVAILABLE",
        "PORTAL_UNREACHABLE",
        "DEPENDENCY_UNAVAILABLE",
        "DEADLINE",
        "IN_PROGRESS",
    }
)


class BackupClientError(Exception):
    """An error of this package, or one the backup function answered (its ``errorType`` as
    ``code``).

    ``code`` is stable: one of the constants of this module, or the function's own code
    (``INVALID_SEALED_INPUT``, ``PORTAL_RATE_LIMITED``, ...). ``field`` is the request field at
    fault, where there is one. ``retryable`` says whether trying again later may help;
    ``retry_after`` is how many seconds to wait first, when the answer said (its
    ``Retry-After``), else ``None``. ``step`` is the function's step that failed (``unseal``,
    ``backup``, ``store``, ...), when its API said.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: Optional[str] = None,
        retryable: bool = False,
        retry_after: Optional[float] = None,
        step: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.retryable = retryable
        self.retry_after = retry_after
        self.step = step

    def __str__(self) -> str:
        return f"{self.code}: {self.args[0]}"


class InvalidInput(BackupClientError, ValueError):
    """A request the function would refuse: ``field `x` is required``, as the function words it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(INVALID_INPUT, f"field `{field}` {problem}", field=field)
        self.problem = problem


class ClientMismatch(BackupClientError, ValueError):
    """The signing shares do not both name the request's ``clientId``."""

    def __init__(self) -> None:
        super().__init__(
            CLIENT_MISMATCH,
            "the signing shares do not both name the request's clientId: the function files a "
            "backup under the client its shares belong to and refuses this one",
            field="generateResponse",
        )


class ConfigurationError(BackupClientError, ValueError):
    """The client was built with settings that cannot work."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_CONFIG, message)


class SealFailed(BackupClientError):
    """KMS or the AWS Encryption SDK could not seal (the KMS error's name, never its text)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(SEAL_FAILED, message, retryable=retryable)


class SendFailed(BackupClientError):
    """SQS, Lambda or the function's API refused the message or the call, or could not be
    reached (API Gateway's own refusals: a bad signature, throttling, a timeout)."""

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: Optional[float] = None
    ) -> None:
        super().__init__(SEND_FAILED, message, retryable=retryable, retry_after=retry_after)


class BackupFailed(BackupClientError):
    """The function answered an error: to a direct invoke (its ``errorType`` is the code, its
    ``errorMessage`` the message) or through its API (``{"error": {"code", "message",
    "retryable", "step", "field"?}}``). The function's messages never quote a value."""


class OutcomeTimeout(BackupClientError, TimeoutError):
    """``wait_for_outcome`` did not see the backup completed in time."""

    def __init__(self, message: str, *, last_status: Optional[str] = None) -> None:
        super().__init__(TIMEOUT, message, retryable=True)
        self.last_status = last_status


# KMS error names retrying may fix, and names it will not; the ESDK wraps KMS errors in text, so
# the class is read from the names alone (the text is never passed on: it can quote a response).
TRANSIENT_KMS = (
    "ThrottlingException",
    "KMSInternalException",
    "KmsInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalFailure",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
)
PERMANENT_KMS = (
    "AccessDeniedException",
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "KmsInvalidStateException",
    "InvalidKeyUsageException",
    "UnrecognizedClientException",
    "IncorrectKeyException",
    "InvalidArnException",
    "ValidationException",
    "NoCredentialsError",
    "NoRegionError",
)


def seal_failure(err: BaseException, kms_code: Optional[str] = None) -> SealFailed:
    """A KMS or ESDK error as ``SealFailed``: the KMS error's code (``kms_code``, as botocore read
    it, or a known name found in the error), never the SDK's text."""
    if kms_code:
        code = kms_code[:64]
        if code in TRANSIENT_KMS or code.endswith("Throttling"):
            return SealFailed(
                f"KMS was unreachable, throttled or failing ({code}); try again later",
                retryable=True,
            )
        return SealFailed(f"KMS refused to seal with the key ({code})")
    seen = []
    e: Optional[BaseException] = err
    while e is not None and len(seen) < 8:
        seen.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(f"{type(x).__name__} {x}" for x in seen)
    for name in TRANSIENT_KMS:
        if name in text:
            return SealFailed(
                f"KMS was unreachable, throttled or failing ({name}); try again later",
                retryable=True,
            )
    for name in PERMANENT_KMS:
        if name in text:
            return SealFailed(f"KMS refused to seal with the key ({name})")
    return SealFailed(f"the AWS Encryption SDK could not seal ({type(err).__name__})")
