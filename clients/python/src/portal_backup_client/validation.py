"""The backup request, validated as the backup function validates it (``src/domain/request.rs``),
before any network call.

Every refusal names the field at fault and what is wrong with it, worded as the function words it,
never a value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple, Union

from .errors import ClientMismatch, InvalidInput

#: The fields of a request given to this client: the function's fields, with the generate
#: response and the API key in the clear (they are sealed together into
#: ``sealedGenerateResponse``).
REQUEST_FIELDS = ("clientId", "clientApiKey", "generateResponse", "idempotencyKey", "backupMode")

#: The backup modes the function takes (absent: the deployment's default).
BACKUP_MODES = ("SELF_MANAGED", "PORTAL_MANAGED")

#: Longest client id, in UTF-8 bytes.
MAX_CLIENT_ID_LEN = 256
#: Longest share (base64), in UTF-8 bytes.
MAX_SHARE_BYTES = 64 * 1024
#: Longest id (share pair id, idempotency key).
MAX_ID_LEN = 128
#: Largest body the function (and SQS) takes.
MAX_BODY_BYTES = 256 * 1024

#: The keys under which Portal's generate response puts each curve, in the function's order.
CURVES = (("SECP256K1", ("SECP256K1", "secp256k1")), ("ED25519", ("ED25519", "ed25519")))

_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ValidRequest:
    """A request the function would take. ``generate_response`` is as given (an object, or that
    object as a JSON string: the function forwards a string as sent)."""

    client_id: str
    client_api_key: str
    generate_response: Union[Mapping[str, Any], str]
    idempotency_key: Optional[str]
    backup_mode: Optional[str]
    #: The signing share pair ids (SECP256K1, ED25519): not secret.
    signing_share_pair_ids: Tuple[str, str]

    def __repr__(self) -> str:  # never the API key or the shares
        return (
            f"ValidRequest(client_id=<{len(self.client_id)} chars>, "
            f"idempotency_key={self.idempotency_key!r}, backup_mode={self.backup_mode!r})"
        )


def id_problem(value: str) -> Optional[str]:
    """What is wrong with an id (share pair id, idempotency key): 1 to 128 of ``[A-Za-z0-9_-]``."""
    if not value or len(value.encode("utf-8")) > MAX_ID_LEN:
        return "must be 1 to 128 characters"
    if not _ID.fullmatch(value):
        return "may hold only letters, digits, '-' and '_'"
    return None


def client_id_problem(value: Any) -> Optional[Tuple[str, str]]:
    """What is wrong with a client id, as (field, problem); ``None`` if nothing."""
    if value is None:
        return ("clientId", "is required")
    if not isinstance(value, str):
        return ("clientId", "must be a string")
    if value == "":
        return ("clientId", "must not be empty")
    if len(value.encode("utf-8")) > MAX_CLIENT_ID_LEN or any(
        unicodedata.category(c) == "Cc" for c in value
    ):
        return ("clientId", "must be at most 256 characters with no control characters")
    return None


def check_client_id(value: Any) -> str:
    """The client id, or ``InvalidInput`` naming ``clientId``."""
    problem = client_id_problem(value)
    if problem:
        raise InvalidInput(*problem)
    return value


def check_idempotency_key(value: Any) -> Optional[str]:
    """The idempotency key (``None`` if absent), or ``InvalidInput`` naming ``idempotencyKey``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("idempotencyKey", "must be a string")
    problem = id_problem(value)
    if problem:
        raise InvalidInput("idempotencyKey", problem)
    return value


def check_backup_mode(value: Any) -> Optional[str]:
    """The backup mode (``None``: the deployment's default), or ``InvalidInput``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("backupMode", "must be a string")
    if value not in BACKUP_MODES:
        raise InvalidInput("backupMode", 'must be "SELF_MANAGED" or "PORTAL_MANAGED"')
    return value


def _required_text(request: Mapping[str, Any], field: str) -> str:
    value = request.get(field)
    if value is None:
        raise InvalidInput(field, "is required")
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if value == "":
        raise InvalidInput(field, "must not be empty")
    return value


def _signing_ids(doc: Any, field: str) -> Tuple[Tuple[str, str], Tuple[Optional[str], Optional[str]]]:
    """The signing share pair ids of a generate response and the client each share names."""
    if not isinstance(doc, Mapping):
        raise InvalidInput(field, "must be a JSON object")
    known = {k for _, keys in CURVES for k in keys}
    for key in doc:
        if key not in known:
            raise InvalidInput(
                field,
                f"has an unknown curve `{str(key)[:32]}` (expected SECP256K1 and ED25519)",
            )
    ids = []
    clients = []
    for curve, keys in CURVES:
        present = [k for k in keys if k in doc]
        if not present:
            raise InvalidInput(field, f"{curve} is missing")
        if len(present) > 1:
            raise InvalidInput(field, f"{curve} appears under more than one key")
        entry = doc[present[0]]
        at = f"{field}.{curve}"
        if not isinstance(entry, Mapping):
            raise InvalidInput(at, "must be an object with `share` and `id`")
        share = entry.get("share", _MISSING)
        if share is _MISSING:
            raise InvalidInput(f"{at}.share", "is required")
        if not isinstance(share, str):
            raise InvalidInput(f"{at}.share", "must be a string")
        if not share or len(share.encode("utf-8")) > MAX_SHARE_BYTES:
            raise InvalidInput(f"{at}.share", f"must be 1 to {MAX_SHARE_BYTES} bytes")
        pair_id = entry.get("id", _MISSING)
        if pair_id is _MISSING:
            raise InvalidInput(f"{at}.id", "is required")
        if not isinstance(pair_id, str):
            raise InvalidInput(f"{at}.id", "must be a string")
        problem = id_problem(pair_id)
        if problem:
            raise InvalidInput(f"{at}.id", problem)
        ids.append(pair_id)
        clients.append(share_client_id(share))
    if ids[0] == ids[1]:
        raise InvalidInput(field, "has the same share pair id for both curves")
    return (ids[0], ids[1]), (clients[0], clients[1])


_MISSING = object()


def share_client_id(share: str) -> Optional[str]:
    """The ``clientId`` a share names: the share is base64 of JSON (or JSON); ``None`` if it names
    none (``src/domain/share.rs``, ``client_id_in``)."""
    text = share.strip()
    try:
        if text.startswith("{"):
            doc = json.loads(text)
        else:
            bare = text.rstrip("=")
            raw = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
            doc = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    named = doc.get("clientId")
    return named if isinstance(named, str) and named else None


def _generate_response(request: Mapping[str, Any]):
    field = "generateResponse"
    value = request.get(field)
    if value is None:
        raise InvalidInput(field, "is required")
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError):
            raise InvalidInput(field, "is not valid JSON") from None
    elif isinstance(value, Mapping):
        doc = value
    else:
        raise InvalidInput(field, "must be an object or a JSON string")
    ids, clients = _signing_ids(doc, field)
    return value, ids, clients


def validate(request: Mapping[str, Any]) -> ValidRequest:
    """Checks a request as the function would: ``{"clientId", "clientApiKey", "generateResponse",
    "idempotencyKey"?, "backupMode"?}``. Raises ``InvalidInput`` (code ``INVALID_INPUT``, the field
    named, never a value) or ``ClientMismatch`` (the shares do not both name ``clientId``)."""
    if not isinstance(request, Mapping):
        raise InvalidInput("body", "must be a JSON object")
    for key in request:
        if key not in REQUEST_FIELDS:
            if key == "sealedGenerateResponse":
                raise InvalidInput(
                    key, "is written by this client: give generateResponse and clientApiKey"
                )
            raise InvalidInput(str(key)[:64], "is not a known field")
    client_id = check_client_id(request.get("clientId"))
    backup_mode = check_backup_mode(request.get("backupMode"))
    generate, ids, clients = _generate_response(request)
    api_key = _required_text(request, "clientApiKey")
    idempotency_key = check_idempotency_key(request.get("idempotencyKey"))
    # The function files a backup under the client its shares name, and refuses shares that name
    # another client or none (CLIENT_MISMATCH): said here, before anything is sent.
    if any(named != client_id for named in clients):
        raise ClientMismatch()
    return ValidRequest(
        client_id=client_id,
        client_api_key=api_key,
        generate_response=generate,
        idempotency_key=idempotency_key,
        backup_mode=backup_mode,
        signing_share_pair_ids=ids,
    )
