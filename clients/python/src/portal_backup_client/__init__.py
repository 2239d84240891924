"""portal-backup-client: seal Portal's ``/v1/generate`` answer for the portal-backup function and
send it (its SQS queue, a direct invoke, or its HTTP API signed with SigV4), for producers.

    import boto3
    from portal_backup_client import BackupClient

    client = BackupClient(
        boto3.client("kms", region_name="us-east-1"),
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-...",
        sqs_client=boto3.client("sqs", region_name="us-east-1"),
        queue_url="https://sqs.us-east-1.amazonaws.com/111122223333/portal-backup-backup-requests",
    )
    sent = client.back_up({"clientId": client_id, "clientApiKey": api_key,
                           "generateResponse": generate_response})
"""

from .client import BackupClient, message_group_id, new_idempotency_key, wait_for_outcome
from .errors import (
    BackupClientError,
    BackupFailed,
    ClientMismatch,
    ConfigurationError,
    InvalidInput,
    OutcomeTimeout,
    SealFailed,
    SendFailed,
)
from .sealing import encryption_context, parse_key_arn, read_header
from .validation import ValidRequest, validate

__version__ = "0.1.0"

__all__ = [
    "BackupClient",
    "wait_for_outcome",
    "validate",
    "ValidRequest",
    "encryption_context",
    "parse_key_arn",
    "read_header",
    "message_group_id",
    "new_idempotency_key",
    "BackupClientError",
    "InvalidInput",
    "ClientMismatch",
    "ConfigurationError",
    "SealFailed",
    "SendFailed",
    "BackupFailed",
    "OutcomeTimeout",
    "__version__",
]
