"""Test helpers: a moto server on a free 127.0.0.1 port, clients of it, and sample requests.

Nothing here reaches AWS: every client has the server's endpoint and moto's test credentials,
and the shared AWS config and credential files are ignored.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore.config

# No profile, config file or instance metadata of the machine running the tests.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_ACCESS_KEY_ID"] = "test"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test"

REGION = "us-east-1"

#: Values that must never appear in an error, a log line or an exception's text.
API_KEY = "sk_live_TEST_API_KEY_d41d8cd98f00b204"
SECRET_SHARE_MARK = "TOPSECRETSHAREMATERIAL"
CLIENT_ID = "cm1clientTEST0001"


def share(client_id: str = CLIENT_ID, curve: str = "SECP256K1") -> str:
    """A signing share as Portal's shares are: base64 of JSON that names its client."""
    doc = {"clientId": client_id, "share": f"{SECRET_SHARE_MARK}-{curve}-00112233", "curve": curve}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def generate_response(client_id: str = CLIENT_ID) -> dict:
    """Portal's /v1/generate answer for `client_id`."""
    return {
        "SECP256K1": {"share": share(client_id, "SECP256K1"), "id": "cmsecp0001"},
        "ED25519": {"share": share(client_id, "ED25519"), "id": "cmed0001"},
    }


def request(**overrides) -> dict:
    r = {"clientId": CLIENT_ID, "clientApiKey": API_KEY, "generateResponse": generate_response()}
    r.update(overrides)
    return r


def secrets_in(text: str) -> list:
    """The secrets of the sample request that `text` quotes (should be none)."""
    g = generate_response()
    found = [s for s in (API_KEY, SECRET_SHARE_MARK, g["SECP256K1"]["share"], g["ED25519"]["share"])
             if s in text]
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_server() -> str:
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not found beside this Python or on PATH (pip install 'moto[server]')")
    return found


def _die_with_parent() -> None:
    """In the server's process, before exec: SIGTERM when the test process dies, however it dies
    (Linux; elsewhere the atexit hook and tearDownClass stop it)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class MotoServer:
    """One moto server process, started and stopped by its owner (a test class)."""

    def __init__(self) -> None:
        self.proc = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> "MotoServer":
        binary = _moto_server()
        for _ in range(3):
            port = _free_port()
            self.proc = subprocess.Popen(
                [binary, "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            atexit.register(self.stop)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        self.url = f"http://127.0.0.1:{port}"
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()  # the port was taken, or it did not come up: another port
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def client(self, service: str, region: str = REGION):
        return boto3.session.Session().client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=botocore.config.Config(retries={"max_attempts": 1}),
        )


def record_calls(client) -> list:
    """The operations `client` makes from now on, by name (every call, whoever makes it)."""
    calls = []

    def hook(model, **_):
        calls.append(model.name)

    client.meta.events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}", hook)
    return calls


@contextlib.contextmanager
def quiet_esdk():
    """The SDK logs a traceback when a refused message's stream is closed: not shown in tests
    that expect the refusal."""
    logger = logging.getLogger("aws_encryption_sdk")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def esdk_decrypt(kms, message: bytes, context: dict):
    """Opens a message as the function does: the MRK-aware keyring on the key the header names,
    the required-encryption-context CMM with the context required in full. Answers the plaintext
    and the header."""
    import aws_encryption_sdk
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
    from aws_cryptographic_material_providers.mpl import models

    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
        max_encrypted_data_keys=1,
    )
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    keyring = mpl.create_aws_kms_mrk_discovery_keyring(
        models.CreateAwsKmsMrkDiscoveryKeyringInput(kms_client=kms, region=kms.meta.region_name)
    )
    cmm = mpl.create_required_encryption_context_cmm(
        models.CreateRequiredEncryptionContextCMMInput(
            underlying_cmm=mpl.create_default_cryptographic_materials_manager(
                models.CreateDefaultCryptographicMaterialsManagerInput(keyring=keyring)
            ),
            required_encryption_context_keys=sorted(context),
        )
    )
    return client.decrypt(source=message, materials_manager=cmm, encryption_context=context)
