"""Sending to the backup function's HTTP API: ``POST {api_url}/backups`` with the sealed body,
signed with SigV4 for ``execute-api`` (the API's routes take IAM authorization only).

The function answers 200 with the backup's outcome, or an error as ``{"error": {"code",
"message", "retryable", "step", "field"?}}`` with a status and, when a retry can help, a
``Retry-After`` (``src/entry/api.rs``, ``src/entry/http.rs``). API Gateway answers its own
refusals (a bad signature, throttling, its timeout) as ``{"message"}``: those are never quoted,
only their status and ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from .errors import RETRYABLE_CODES, BackupFailed, ConfigurationError, SendFailed

#: The service a request to API Gateway is signed for.
SERVICE = "execute-api"
#: The function's route.
ROUTE = "/backups"
#: Seconds to wait for the answer: API Gateway gives up after 30 s (an HTTP API's limit).
DEFAULT_TIMEOUT = 60.0
_CONNECT_TIMEOUT = 10.0

_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")
# The default endpoint of an API: <api id>.execute-api.<region>.amazonaws.com (.cn in China).
_API_HOST = re.compile(
    r"[a-z0-9]+\.execute-api\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?"
)
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def backups_url(api_url: Any) -> str:
    """The URL to POST to: ``api_url`` and ``/backups`` (an ``api_url`` that already ends in
    ``/backups``, as the stack's ``ApiUrl`` output does, is taken as it is). ``https`` only
    (``http`` for a loopback host: a local test server); no query, fragment or user info."""
    if not isinstance(api_url, str) or not api_url:
        raise ConfigurationError("api_url must be the function's API URL (https://...)")
    try:
        parts = urlsplit(api_url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigurationError("api_url is not a URL") from None
    if not host:
        raise ConfigurationError("api_url has no host")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK):
        raise ConfigurationError("api_url must be https (http only for a loopback test server)")
    if parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        raise ConfigurationError("api_url may not carry a query, a fragment or user info")
    path = parts.path.rstrip("/")
    if not path.endswith(ROUTE):
        path += ROUTE
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def region_of_api_url(api_url: str) -> Optional[str]:
    """The region in an API's default host (``<id>.execute-api.<region>.amazonaws.com``), or
    ``None`` (a custom domain, a local server)."""
    try:
        host = urlsplit(api_url).hostname or ""
    except ValueError:
        return None
    match = _API_HOST.fullmatch(host)
    return match.group("region") if match else None


def check_region(region: Any) -> str:
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ConfigurationError("region must be an AWS region name (e.g. us-east-1)")
    return region


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date), or ``None``."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86400))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, min(when.timestamp() - now, 86400.0))


def _transport_failure(err: Exception) -> SendFailed:
    """A connection failure as ``SendFailed``: botocore's error class only (its text quotes the
    URL)."""
    name = type(err).__name__
    retryable = any(w in name for w in ("Connection", "Timeout", "Endpoint", "Proxy"))
    hint = " (the backup may have run: retry with the same idempotency key)" if "Read" in name else ""
    return SendFailed(f"the backup API could not be reached ({name}){hint}", retryable=retryable)


def _error_type(headers: Any) -> Optional[str]:
    """API Gateway's ``x-amzn-ErrorType`` (``ForbiddenException``, ...), its name only."""
    raw = headers.get("x-amzn-errortype") if headers is not None else None
    name = str(raw or "").split(":", 1)[0].strip()
    return name if _TOKEN.fullmatch(name) else None


def request_id(headers: Any) -> str:
    """API Gateway's request id: ``apigw-requestid`` (an HTTP API), else ``x-amzn-requestid``
    (a REST API), else ``""``."""
    for name in ("apigw-requestid", "x-amzn-requestid"):
        value = headers.get(name) if headers is not None else None
        if value and _REQUEST_ID.fullmatch(str(value)):
            return str(value)
    return ""


def _function_error(answer: Any) -> Optional[Dict[str, Any]]:
    """The function's ``{"error": {"code", ...}}``, or ``None`` (not the function's answer)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), dict):
        return None
    error = answer["error"]
    code = error.get("code")
    if not isinstance(code, str) or not _TOKEN.fullmatch(code):
        return None
    return error


def answer_failure(status: int, headers: Any, content: bytes) -> Exception:
    """A non-2xx answer as ``BackupFailed`` (the function's own error: its code, message, field
    and step) or ``SendFailed`` (API Gateway's: its status and error type only, never its text).
    ``retry_after`` carries the answer's ``Retry-After``."""
    retry_after = retry_after_seconds(headers.get("retry-after") if headers is not None else None)
    try:
        answer = json.loads(content) if content else None
    except (ValueError, RecursionError):
        answer = None
    error = _function_error(answer)
    if error is not None:
        code = error["code"]
        # The function's messages name a field or a step, never a value.
        message = " ".join(str(error.get("message") or "").split())[:500]
        field = error.get("field")
        step = error.get("step")
        retryable = (
            error.get("retryable") is True or code in RETRYABLE_CODES or retry_after is not None
        )
        return BackupFailed(
            code,
            message or f"the backup function answered HTTP {status}",
            field=field if isinstance(field, str) and len(field) <= 128 else None,
            retryable=retryable,
            retry_after=retry_after,
            step=step if isinstance(step, str) and _TOKEN.fullmatch(step) else None,
        )
    kind = _error_type(headers)
    what = f"HTTP {status}" + (f", {kind}" if kind else "")
    retryable = status in _RETRYABLE_STATUS or retry_after is not None
    hint = ""
    if status in (403, 401):
        hint = ": the credentials may not call execute-api:Invoke on POST /backups, or the signature was refused"
    elif status == 504:
        hint = ": the backup may have run: retry with the same idempotency key"
    return SendFailed(
        f"the backup API refused the request ({what}){hint}",
        retryable=retryable,
        retry_after=retry_after,
    )


class ApiSender:
    """Posts sealed bodies to one API, signed with the session's credentials for ``region``."""

    def __init__(
        self,
        api_url: str,
        region: str,
        session: Any,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError("timeout must be a number of seconds over 0")
        self.url = backups_url(api_url)
        self.region = check_region(region)
        self._session = session
        # As boto3's clients do: the environment's proxies (NO_PROXY honored) and CA bundle.
        timeouts: Tuple[float, float] = (min(_CONNECT_TIMEOUT, float(timeout)), float(timeout))
        self._http = URLLib3Session(
            verify=os.environ.get("AWS_CA_BUNDLE") or True,
            proxies=get_environ_proxies(self.url),
            timeout=timeouts,
        )

    def _credentials(self) -> Any:
        try:
            credentials = self._session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials is not None else None
        except Exception as e:  # a refresh or an assume-role that failed: its class only
            raise SendFailed(
                f"could not get AWS credentials to sign the request ({type(e).__name__})",
                retryable=True,
            ) from None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise ConfigurationError(
                "no AWS credentials to sign the API request: the session found none"
            )
        return frozen

    def send(self, body: str) -> Dict[str, Any]:
        """POSTs ``body``; answers ``{"answer": <the function's outcome>, "requestId"}``."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self._credentials()
        request = AWSRequest(
            method="POST",
            url=self.url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        SigV4Auth(credentials, SERVICE, self.region).add_auth(request)
        try:
            response = self._http.send(request.prepare())
        except Exception as e:
            raise _transport_failure(e) from None
        status = int(response.status_code)
        headers = response.headers
        content = response.content or b""
        if not 200 <= status < 300:
            raise answer_failure(status, headers, content)
        try:
            answer = json.loads(content)
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise SendFailed(
                f"the backup API answered HTTP {status} with something other than a JSON object"
            )
        return {"answer": answer, "requestId": request_id(headers)}
