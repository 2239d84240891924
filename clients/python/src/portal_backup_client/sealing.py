"""Sealing a generate response as the backup function opens it (``src/adapters/esdk.rs``).

An AWS Encryption SDK message, standard base64: the MRK-aware KMS keyring on exactly one key (the
function's, by its key ARN: never an alias, never resolved with ``kms:DescribeKey``), the
committing suite without signature (``AES_256_GCM_HKDF_SHA512_COMMIT_KEY``, 0x0478), commitment
policy ``REQUIRE_ENCRYPT_REQUIRE_DECRYPT``, and the encryption context exactly
``{"clientId": <clientId>, "purpose": "generate-response"}``, stored in the header.
"""

from __future__ import annotations

import base64
import re
import struct
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from .errors import ConfigurationError, SealFailed, seal_failure

#: The algorithm suite id of every message the function takes.
SUITE_COMMIT_KEY = 0x0478
#: The provider id of a data key wrapped by AWS KMS.
AWS_KMS_PROVIDER = "aws-kms"
#: The ``purpose`` of a sealed generate response.
PURPOSE = "generate-response"

_KEY_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):"
    r"(?P<account>\d{12}):key/(?P<key_id>[A-Za-z0-9-]{1,128})"
)

_ARN_HELP = "give the function's key as its key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID)"


def encryption_context(client_id: str) -> Dict[str, str]:
    """The context a sealed generate response is bound to, and nothing else."""
    return {"clientId": client_id, "purpose": PURPOSE}


def parse_key_arn(key_arn: Any) -> Dict[str, str]:
    """The parts of a KMS key ARN; ``ConfigurationError`` for an alias, a bare key id or anything
    else. The producer role may not call ``kms:DescribeKey``, so nothing here asks KMS."""
    if not isinstance(key_arn, str) or not key_arn:
        raise ConfigurationError(f"key_arn is required: {_ARN_HELP}")
    if key_arn.startswith("alias/") or (key_arn.startswith("arn:") and ":alias/" in key_arn):
        raise ConfigurationError(
            f"key_arn is a key alias: {_ARN_HELP}. This client never resolves an alias (the "
            "producer role may not call kms:DescribeKey) and the function takes exactly its key"
        )
    if not key_arn.startswith("arn:"):
        raise ConfigurationError(f"key_arn is a bare key id, not an ARN: {_ARN_HELP}")
    match = _KEY_ARN.fullmatch(key_arn)
    if not match:
        raise ConfigurationError(f"key_arn is not a KMS key ARN: {_ARN_HELP}")
    return match.groupdict()


@dataclass(frozen=True)
class DataKey:
    """One encrypted data key of a message."""

    provider_id: str
    provider_info: str


@dataclass(frozen=True)
class MessageHeader:
    """What a message's header says, unauthenticated (the format reference's version 2)."""

    version: int
    suite: int
    stored_context: List[Tuple[str, str]]
    data_keys: List[DataKey]


class _Reader:
    """A byte reader that raises ``ValueError`` when input runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if len(self.data) - self.pos < n:
            raise ValueError("the message header is cut short")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def text(self) -> str:
        return self.take(self.u16()).decode("utf-8")


def read_header(message: bytes) -> MessageHeader:
    """Reads an AWS Encryption SDK message header up to its encrypted data keys (the function's
    ``read_header``). Raises ``ValueError`` if it is cut short or not format version 2."""
    r = _Reader(message)
    version = r.take(1)[0]
    if version != 0x02:
        raise ValueError("not an AWS Encryption SDK message of format version 2")
    suite = r.u16()
    r.take(32)  # message id
    aad = _Reader(r.take(r.u16()))
    context: List[Tuple[str, str]] = []
    if aad.data:
        for _ in range(aad.u16()):
            context.append((aad.text(), aad.text()))
        if aad.pos != len(aad.data):
            raise ValueError("the encryption context is longer than its pairs")
    keys = []
    for _ in range(r.u16()):
        provider_id, provider_info = r.text(), r.text()
        r.take(r.u16())
        keys.append(DataKey(provider_id, provider_info))
    return MessageHeader(version, suite, context, keys)


# The error code of the last GenerateDataKey on this thread (the MPL calls KMS on the caller's
# thread): botocore's name for it, never its text.
_LAST_KMS_ERROR = threading.local()
_HOOK_ID = "portal-backup-client-kms-error"


def _after_call(parsed=None, **_: Any) -> None:
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    _LAST_KMS_ERROR.code = str(code) if code else None


def _after_call_error(exception=None, **_: Any) -> None:
    _LAST_KMS_ERROR.code = type(exception).__name__ if exception is not None else None


class Sealer:
    """Seals generate responses under one KMS key. Built once; no KMS call until ``seal``."""

    def __init__(self, kms_client: Any, key_arn: str) -> None:
        parts = parse_key_arn(key_arn)
        region = getattr(getattr(kms_client, "meta", None), "region_name", None)
        if region and region != parts["region"]:
            raise ConfigurationError(
                f"the KMS client calls {region} but the key is in {parts['region']}: build the "
                "client in the key's region, or give the ARN of the multi-Region key's replica in "
                "the client's region"
            )
        # Imported here: the SDK takes about half a second to import.
        import aws_encryption_sdk
        from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
        from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
        from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsMrkKeyringInput
        from aws_encryption_sdk.identifiers import AlgorithmSuite

        self.key_arn = key_arn
        self._suite = AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        self._esdk = aws_encryption_sdk.EncryptionSDKClient(
            commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
            max_encrypted_data_keys=1,
        )
        mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
        try:
            # The MRK-aware keyring on the ARN as given: building it calls nothing.
            self._keyring = mpl.create_aws_kms_mrk_keyring(
                CreateAwsKmsMrkKeyringInput(kms_key_id=key_arn, kms_client=kms_client)
            )
        except Exception as e:  # the MPL's own exception types
            raise ConfigurationError(
                f"the Material Providers Library refused the key ARN or the KMS client "
                f"({type(e).__name__})"
            ) from None
        # The MPL keeps KMS's message but drops its error code: the code is read where botocore
        # parses the answer, by a read-only hook on the client (one per client, whatever the number
        # of sealers; it keeps the code alone, per thread).
        events = getattr(getattr(kms_client, "meta", None), "events", None)
        if events is not None:
            events.register(
                "after-call.kms.GenerateDataKey", _after_call, unique_id=_HOOK_ID
            )
            events.register(
                "after-call-error.kms.GenerateDataKey", _after_call_error, unique_id=_HOOK_ID + "-error"
            )

    def seal(self, plaintext: bytes, client_id: str) -> str:
        """The message sealing ``plaintext`` for ``client_id``, in standard base64. Raises
        ``SealFailed`` (the KMS error's name, never the SDK's text)."""
        context = encryption_context(client_id)
        _LAST_KMS_ERROR.code = None
        try:
            message, _ = self._esdk.encrypt(
                source=plaintext,
                keyring=self._keyring,
                encryption_context=context,
                algorithm=self._suite,
            )
        except Exception as e:
            raise seal_failure(e, getattr(_LAST_KMS_ERROR, "code", None)) from None
        self._check(bytes(message), context)
        return base64.b64encode(message).decode("ascii")

    def _check(self, message: bytes, context: Dict[str, str]) -> None:
        """What the function checks of the header before it asks KMS, checked here too: a message
        it would refuse is never sent."""
        try:
            header = read_header(message)
        except ValueError:
            raise SealFailed("the AWS Encryption SDK wrote a header this client cannot read") from None
        if header.suite != SUITE_COMMIT_KEY:
            raise SealFailed("the message is not under AES_256_GCM_HKDF_SHA512_COMMIT_KEY")
        if sorted(header.stored_context) != sorted(context.items()):
            raise SealFailed("the message's stored encryption context is not exactly the required one")
        if [k.provider_id for k in header.data_keys] != [AWS_KMS_PROVIDER]:
            raise SealFailed("the message does not have exactly one data key, wrapped by AWS KMS")
