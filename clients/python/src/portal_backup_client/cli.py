"""The command line: ``python -m portal_backup_client seal|send``.

    PORTAL_CLIENT_API_KEY=... python -m portal_backup_client seal \\
        --key-arn arn:aws:kms:REGION:ACCOUNT:key/ID --client-id CLIENT \\
        --generate-response-file generate.json            # prints the JSON body
    PORTAL_CLIENT_API_KEY=... python -m portal_backup_client send ... --queue-url URL
                                                          # prints {"idempotencyKey", "messageId"}
    PORTAL_CLIENT_API_KEY=... python -m portal_backup_client send ... --api-url URL
                                                          # ... and "outcome" (SigV4-signed POST)

The client API key is read from ``PORTAL_CLIENT_API_KEY`` only, never from a flag (flags show in
process lists). An error is one line on stderr, never a secret: exit 1, or 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from .errors import BackupClientError, InvalidInput

API_KEY_ENV = "PORTAL_CLIENT_API_KEY"

#: Largest generate-response file read (the function's body limit is 256 KiB).
MAX_FILE_BYTES = 1024 * 1024

PROG = "python -m portal_backup_client"


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that never repeat an argument the user typed (it may be a
    secret passed by mistake)."""

    def error(self, message: str):  # type: ignore[override]
        if "unrecognized arguments" in message:
            message = "unrecognized arguments (not shown: one may be a secret)"
        elif "invalid choice" in message:
            message = message.split(":", 1)[0] + ": invalid choice (seal or send)"
        raise _Usage(" ".join(message.split()))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Seal Portal's /v1/generate answer for the portal-backup function, and send "
        f"it. The client API key is read from {API_KEY_ENV}.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{seal,send}")
    commands.required = True
    for name, help_text in (
        ("seal", "print the request's JSON body, sealed"),
        (
            "send",
            "seal and send to the queue, the function or its API; print {idempotencyKey, "
            "messageId} (and the outcome, from the function or its API)",
        ),
    ):
        p = commands.add_parser(
            name,
            help=help_text,
            allow_abbrev=False,
            description=f"{help_text[0].upper()}{help_text[1:]}. The client API key is read from "
            f"{API_KEY_ENV} only (flags show in process lists).",
        )
        p.add_argument("--key-arn", required=True, help="the function's backup key, as a key ARN")
        p.add_argument("--client-id", required=True, help="the Portal client id")
        p.add_argument(
            "--generate-response-file",
            required=True,
            metavar="PATH",
            help="Portal's /v1/generate answer (JSON); - for stdin",
        )
        p.add_argument("--idempotency-key", help="1-128 of [A-Za-z0-9_-] (send: random if absent)")
        p.add_argument("--backup-mode", help="SELF_MANAGED or PORTAL_MANAGED (default: the stack's)")
        p.add_argument("--region", help="AWS region (default: the key ARN's)")
        p.add_argument("--endpoint-url", help="AWS endpoint, for a local stack")
        if name == "send":
            to = p.add_mutually_exclusive_group(required=True)
            to.add_argument("--queue-url", help="the backup queue (the stack's BackupQueueUrl)")
            to.add_argument("--function-name", help="the backup function, invoked directly")
            to.add_argument(
                "--api-url",
                help="the function's HTTP API (the stack's ApiUrl): POST /backups, signed with "
                "SigV4 for the region in its host, else --region, else the key ARN's",
            )
    return parser


def _read_generate_response(path: str):
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise BackupClientError(
            "INVALID_INPUT", f"cannot read --generate-response-file ({type(e).__name__})",
            field="generateResponse",
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput("generateResponse", f"is over {MAX_FILE_BYTES} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidInput("generateResponse", "is not valid JSON") from None


def _clients(args: argparse.Namespace):
    import boto3

    from .sealing import parse_key_arn

    region = args.region or parse_key_arn(args.key_arn)["region"]
    kw = {"region_name": region}
    if args.endpoint_url:
        kw["endpoint_url"] = args.endpoint_url
    session = boto3.session.Session()
    kms = session.client("kms", **kw)
    sqs = lam = None
    if getattr(args, "queue_url", None):
        sqs = session.client("sqs", **kw)
    if getattr(args, "function_name", None):
        lam = session.client("lambda", **kw)
    return session, kms, sqs, lam


def _run(args: argparse.Namespace) -> str:
    from .client import BackupClient

    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        raise BackupClientError(
            "INVALID_INPUT",
            f"field `clientApiKey` is required: set {API_KEY_ENV} (never a flag: flags show in "
            "process lists)",
            field="clientApiKey",
        )
    request = {
        "clientId": args.client_id,
        "clientApiKey": api_key,
        "generateResponse": _read_generate_response(args.generate_response_file),
    }
    if args.idempotency_key is not None:
        request["idempotencyKey"] = args.idempotency_key
    if args.backup_mode is not None:
        request["backupMode"] = args.backup_mode
    session, kms, sqs, lam = _clients(args)
    if args.command == "seal":
        return BackupClient(kms, args.key_arn).seal(request)
    if args.api_url is not None:
        from .api import region_of_api_url

        # The API's own region when its host names one (a custom domain does not).
        region = None if region_of_api_url(args.api_url) else args.region
        client = BackupClient(
            kms, args.key_arn, api_url=args.api_url, session=session, region=region
        )
    else:
        client = BackupClient(
            kms,
            args.key_arn,
            sqs_client=sqs,
            queue_url=args.queue_url,
            lambda_client=lam,
            function_name=args.function_name,
        )
    return json.dumps(client.back_up(request))


def _fail(message: str, status: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; answers the exit status."""
    try:
        args = _parser().parse_args(argv)
    except _Usage as e:
        return _fail(f"{e} (see {PROG} --help)", 2)
    try:
        out = _run(args)
    except BackupClientError as e:
        return _fail(str(e), 1)
    except Exception as e:  # boto3 and the SDK: the class only, their text may quote a request
        return _fail(f"{type(e).__name__} ({type(e).__module__.split('.')[0]})", 1)
    print(out)
    return 0
