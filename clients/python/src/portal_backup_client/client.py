"""The producer's client: seal a generate response with its API key, send the backup request to
the backup function (its SQS queue, a direct invoke, or its HTTP API signed with SigV4), and wait
for the backup to complete."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Callable, Dict, Mapping, Optional

from .errors import (
    RETRYABLE_CODES,
    BackupFailed,
    ConfigurationError,
    InvalidInput,
    OutcomeTimeout,
    SendFailed,
)
from .api import DEFAULT_TIMEOUT, ApiSender, backups_url, region_of_api_url
from .sealing import Sealer, parse_key_arn
from .validation import (
    MAX_BODY_BYTES,
    ValidRequest,
    check_client_id,
    check_idempotency_key,
    validate,
)

#: AWS error codes that retrying may fix.
_RETRYABLE_AWS = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestThrottled",
        "ServiceUnavailable",
        "ServiceException",
        "InternalFailure",
        "InternalError",
        "KMS.ThrottlingException",
        "EC2ThrottledException",
        "ResourceConflictException",
    }
)

# What SQS takes as a MessageGroupId: 1 to 128 printable ASCII characters, no space.
_GROUP_ID = re.compile(r"[\x21-\x7e]{1,128}")


def new_idempotency_key() -> str:
    """A random idempotency key: 32 of ``[A-Za-z0-9_-]`` (192 random bits)."""
    return secrets.token_urlsafe(24)


def message_group_id(client_id: str) -> str:
    """The FIFO message group of a client: its id, or, for an id SQS does not take as a group id
    (over 128 characters, a space or a non-ASCII character), ``sha256-`` and the id's SHA-256
    (one group per client either way, so a client's requests stay in order)."""
    if _GROUP_ID.fullmatch(client_id):
        return client_id
    import hashlib

    return "sha256-" + hashlib.sha256(client_id.encode("utf-8")).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a {type(value).__name__} is not JSON")


def _aws_failure(service: str, operation: str, err: Exception) -> SendFailed:
    """An AWS SDK error as ``SendFailed``: the service's error code or the SDK's error class,
    never the SDK's text (it can quote a parameter)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code") or "unknown")[:64]
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        retryable = code in _RETRYABLE_AWS or (isinstance(status, int) and status >= 500)
        return SendFailed(f"{service} {operation} failed ({code})", retryable=retryable)
    name = type(err).__name__
    retryable = any(w in name for w in ("Connection", "Timeout", "Endpoint"))
    return SendFailed(f"{service} {operation} failed ({name})", retryable=retryable)


def _read_payload(response: Mapping[str, Any]) -> bytes:
    payload = response.get("Payload")
    if payload is None:
        return b""
    if hasattr(payload, "read"):
        return payload.read()
    return bytes(payload)


def _invoke(lambda_client: Any, function_name: str, body: str, what: str) -> Dict[str, Any]:
    """A synchronous invoke; its answer, or ``BackupFailed`` with the function's ``errorType``."""
    try:
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=body.encode("utf-8"),
        )
    except Exception as e:
        raise _aws_failure("Lambda", "Invoke", e) from None
    raw = _read_payload(response)
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    if response.get("FunctionError"):
        code, message = "FUNCTION_ERROR", f"the {what} answered an error"
        if isinstance(answer, dict):
            code = str(answer.get("errorType") or code)[:64]
            # The function's messages name a field or a step, never a value.
            text = " ".join(str(answer.get("errorMessage") or "").split())
            message = text[:500] or message
        raise BackupFailed(code, message, retryable=code in RETRYABLE_CODES)
    if not isinstance(answer, dict):
        raise SendFailed(f"the {what} answered something other than a JSON object")
    return {"answer": answer, "requestId": (response.get("ResponseMetadata") or {}).get("RequestId")}


class BackupClient:
    """Seals and sends backup requests to one deployment of the backup function.

    ``kms_client`` is a boto3 KMS client in the key's region; ``key_arn`` is the function's backup
    key as a key ARN (never an alias: this client never calls ``kms:DescribeKey``). For
    ``back_up`` give one destination: ``sqs_client`` and ``queue_url`` (the stack's
    ``BackupQueueUrl``), ``lambda_client`` and ``function_name`` (the backup function, invoked
    directly), or ``api_url`` (the function's HTTP API, stack output ``ApiUrl``: requests signed
    with SigV4 for ``execute-api`` with the credentials of ``session``, default
    ``boto3.Session()``, for ``region``, default the region in the API's host, else the key
    ARN's; ``timeout`` seconds for its answer). ``seal`` needs none. Callers build the boto3
    clients with their own region, endpoint and credentials.
    """

    def __init__(
        self,
        kms_client: Any,
        key_arn: str,
        sqs_client: Any = None,
        queue_url: Optional[str] = None,
        lambda_client: Any = None,
        function_name: Optional[str] = None,
        *,
        api_url: Optional[str] = None,
        session: Any = None,
        region: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if (sqs_client is None) != (queue_url is None):
            raise ConfigurationError("give sqs_client and queue_url together")
        if (lambda_client is None) != (function_name is None):
            raise ConfigurationError("give lambda_client and function_name together")
        if sum(d is not None for d in (queue_url, function_name, api_url)) > 1:
            raise ConfigurationError(
                "give one destination: a queue (sqs_client, queue_url), a function "
                "(lambda_client, function_name) or the API (api_url)"
            )
        if api_url is None and (session is not None or region is not None):
            raise ConfigurationError("session and region are for the API: give api_url with them")
        if queue_url is not None and (not isinstance(queue_url, str) or not queue_url):
            raise ConfigurationError("queue_url must be the queue's URL")
        if function_name is not None and (not isinstance(function_name, str) or not function_name):
            raise ConfigurationError("function_name must be the function's name or ARN")
        self._sealer = Sealer(kms_client, key_arn)
        self.key_arn = key_arn
        self._sqs = sqs_client
        self.queue_url = queue_url
        self._lambda = lambda_client
        self.function_name = function_name
        self._api: Optional[ApiSender] = None
        self.api_url = api_url
        self.region: Optional[str] = None
        if api_url is not None:
            url = backups_url(api_url)
            if region is None:
                region = region_of_api_url(url) or parse_key_arn(key_arn)["region"]
            if session is None:
                import boto3

                session = boto3.Session()
            self._api = ApiSender(url, region, session, timeout)
            self.region = self._api.region

    def __repr__(self) -> str:
        return (
            f"BackupClient(key_arn={self.key_arn!r}, queue_url={self.queue_url!r}, "
            f"function_name={self.function_name!r}, api_url={self.api_url!r})"
        )

    def seal(self, request: Mapping[str, Any]) -> str:
        """The request's JSON body for the backup function.

        ``request`` is ``{"clientId", "clientApiKey", "generateResponse", "idempotencyKey"?,
        "backupMode"?}``: the API key and Portal's ``/v1/generate`` answer (an object, or that
        object as a JSON string) are sealed together into ``sealedGenerateResponse``; the body
        carries ``clientId``, ``sealedGenerateResponse``, and ``idempotencyKey`` and
        ``backupMode`` when given. Validated first, as the function validates it: raises
        ``InvalidInput`` / ``ClientMismatch`` before any KMS call, ``SealFailed`` if KMS refuses.
        """
        return self._seal(validate(request))

    def _seal(self, valid: ValidRequest, idempotency_key: Optional[str] = None) -> str:
        payload = {
            "clientApiKey": valid.client_api_key,
            "generateResponse": valid.generate_response,
        }
        plaintext = json.dumps(payload, default=_json_default, separators=(",", ":")).encode()
        sealed = self._sealer.seal(plaintext, valid.client_id)
        body: Dict[str, Any] = {"clientId": valid.client_id}
        key = idempotency_key or valid.idempotency_key
        if key is not None:
            body["idempotencyKey"] = key
        if valid.backup_mode is not None:
            body["backupMode"] = valid.backup_mode
        body["sealedGenerateResponse"] = sealed
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode("utf-8")) > MAX_BODY_BYTES:
            raise InvalidInput("body", f"would be over the function's limit of {MAX_BODY_BYTES} bytes")
        return text

    def back_up(self, request: Mapping[str, Any]) -> Dict[str, Any]:
        """Seals the request and sends it; answers ``{"idempotencyKey", "messageId"}``.

        A request without ``idempotencyKey`` gets a random one (returned: it names the backup in
        the operator function's ``list``). Send a retry of the same wallet's backup with the same
        key. To a queue: ``SendMessage`` (a ``.fifo`` queue: ``MessageGroupId`` the client id,
        ``MessageDeduplicationId`` the idempotency key); ``messageId`` is SQS's. To a function:
        a synchronous invoke that waits for the backup; ``messageId`` is Lambda's request id and
        ``outcome`` the function's answer (``{"clientId", "backupMode", "backupSharePairIds",
        "status": "COMPLETED"}``); a refusal raises ``BackupFailed`` with the function's code.
        To the API: ``POST {api_url}/backups`` signed with SigV4, which waits for the backup
        too; ``outcome`` is the function's 200 answer, ``messageId`` API Gateway's request id
        (``""`` if it sent none). The function's error answer raises ``BackupFailed`` (its
        ``code``, ``field``, ``step``, ``retryable``; ``retry_after`` from ``Retry-After``); API
        Gateway's own refusal (a signature or a permission refused, throttling, its 30 s
        timeout) raises ``SendFailed`` with the status.
        """
        if self.queue_url is None and self.function_name is None and self._api is None:
            raise ConfigurationError(
                "back_up needs a queue (sqs_client, queue_url), a function (lambda_client, "
                "function_name) or the API (api_url)"
            )
        valid = validate(request)
        key = valid.idempotency_key or new_idempotency_key()
        body = self._seal(valid, key)
        if self.queue_url is not None:
            params: Dict[str, Any] = {"QueueUrl": self.queue_url, "MessageBody": body}
            if self.queue_url.endswith(".fifo"):
                params["MessageGroupId"] = message_group_id(valid.client_id)
                params["MessageDeduplicationId"] = key
            try:
                sent = self._sqs.send_message(**params)
            except Exception as e:
                raise _aws_failure("SQS", "SendMessage", e) from None
            return {"idempotencyKey": key, "messageId": sent.get("MessageId")}
        if self._api is not None:
            posted = self._api.send(body)
            return {
                "idempotencyKey": key,
                "messageId": posted["requestId"],
                "outcome": posted["answer"],
            }
        invoked = _invoke(self._lambda, self.function_name, body, "backup function")
        return {
            "idempotencyKey": key,
            "messageId": invoked["requestId"],
            "outcome": invoked["answer"],
        }


def wait_for_outcome(
    lambda_client: Any,
    operator_function_name: str,
    client_id: str,
    idempotency_key: str,
    timeout: float,
    *,
    interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Dict[str, Any]:
    """Polls the operator function's ``{"action": "list", "clientId"}`` until the backup with
    ``key`` equal to ``idempotency_key`` is ``COMPLETED`` (the key ``back_up`` returned, or, for a
    body sealed without one, ``<SECP256K1 id>.<ED25519 id>``, the function's default); answers its summary (``{"key",
    "status", "backupMode", "backupSharePairIds", "signingSharePairIds", "createdAt",
    "updatedAt", "completedAt", "addresses"?}``). Raises ``OutcomeTimeout`` after ``timeout``
    seconds (a request that failed every retry sits in the dead-letter queue and never
    completes), ``BackupFailed`` if the operator function refuses the call.

    The operator function is invoked by the recovery role only (its resource policy): call this
    with that role's credentials, or from a test stack.
    """
    check_client_id(client_id)
    if idempotency_key is None:
        raise InvalidInput("idempotencyKey", "is required")
    # A request sent without a key is named by its signing share pair ids, `<SECP256K1>.<ED25519>`.
    parts = idempotency_key.split(".") if isinstance(idempotency_key, str) else [idempotency_key]
    if len(parts) > 2:
        raise InvalidInput("idempotencyKey", "may hold only letters, digits, '-' and '_'")
    for part in parts:
        check_idempotency_key(part)
    if not isinstance(operator_function_name, str) or not operator_function_name:
        raise ConfigurationError("operator_function_name must be the operator function's name or ARN")
    deadline = time.monotonic() + max(0.0, float(timeout))
    body = json.dumps({"action": "list", "clientId": client_id})
    last = "not listed yet"
    while True:
        answer = _invoke(lambda_client, operator_function_name, body, "operator function")["answer"]
        backups = answer.get("backups")
        if not isinstance(backups, list):
            raise SendFailed("the operator function's list answer has no backups")
        for summary in backups:
            if isinstance(summary, dict) and summary.get("key") == idempotency_key:
                last = str(summary.get("status"))
                if last == "COMPLETED":
                    return summary
                break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OutcomeTimeout(
                f"the backup was not COMPLETED within {timeout:g} s (last seen: {last})",
                last_status=None if last == "not listed yet" else last,
            )
        sleep(min(interval, remaining))
