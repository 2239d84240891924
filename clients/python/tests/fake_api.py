"""A stand-in for the backup function's HTTP API: an ``http.server`` on 127.0.0.1 (a free port),
in a thread, that records each request and answers the next of its answers, as the function
answers (``src/entry/api.rs``). And the check of a request's SigV4 signature, recomputed with
botocore from what the server received."""

from __future__ import annotations

import datetime
import http.server
import json
import re
import threading
from typing import Dict, List, Optional

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

#: Static fake credentials: nothing here reaches AWS.
ACCESS_KEY = "AKIAFAKEFAKEFAKE0001"
SECRET_KEY = "fakeSecretKeyForTestsOnly/0000000000000000"
SESSION_TOKEN = "FakeSessionTokenForTestsOnly"

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z-]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def outcome(client_id: str, key: str) -> dict:
    """The function's 200 answer (``workflow::backup::Outcome``)."""
    return {
        "clientId": client_id,
        "backupMode": "SELF_MANAGED",
        "backupSharePairIds": ["bsecp0001", "bed0001"],
        "idempotencyKey": key,
        "status": "COMPLETED",
    }


def error(status: int, code: str, message: str, *, retryable: bool, step: str,
          field: Optional[str] = None, retry_after: Optional[str] = None) -> tuple:
    """The function's error answer (``entry::http::error_answer``)."""
    body = {"error": {"code": code, "step": step, "retryable": retryable, "message": message}}
    if field is not None:
        body["error"]["field"] = field
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return status, headers, json.dumps(body).encode()


class Captured:
    """One request as the server received it."""

    def __init__(self, method: str, path: str, headers: List[tuple], body: bytes) -> None:
        self.method = method
        self.path = path
        self.header_pairs = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        values = [v for n, v in self.header_pairs if n.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def json(self) -> dict:
        return json.loads(self.body)


class FakeApi:
    """Answers each request with the next of ``answers`` (the last one repeats): ``(status,
    headers, body bytes)``. Records every request in ``requests``."""

    def __init__(self) -> None:
        self.answers: List[tuple] = []
        self.requests: List[Captured] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                api.requests.append(Captured("POST", self.path, list(self.headers.items()), body))
                status, headers, content = api.answers.pop(0) if len(api.answers) > 1 else api.answers[0]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *_):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FakeApi":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def answer(self, *answers: tuple) -> None:
        self.answers = list(answers)
        self.requests = []

    def answer_ok(self, client_id: str, key: str, request_id: Optional[str] = "req-api-1") -> dict:
        body = outcome(client_id, key)
        headers = {"apigw-requestid": request_id} if request_id else {}
        self.answer((200, headers, json.dumps(body).encode()))
        return body


def verify_signature(test, captured: Captured, *, region: str, token: Optional[str] = None) -> Dict[str, str]:
    """Checks that ``captured`` is signed with SigV4 for ``execute-api`` in ``region`` by the
    static test credentials: the signature is recomputed with botocore's ``SigV4Auth`` from the
    method, URL, the signed headers and the body received, at the date it names. Answers the
    Authorization header's parts."""
    authorization = captured.header("Authorization")
    test.assertIsNotNone(authorization, "no Authorization header")
    match = AUTHORIZATION.fullmatch(authorization)
    test.assertIsNotNone(match, "the Authorization header is not SigV4")
    parts = match.groupdict()
    test.assertEqual(
        (parts["key"], parts["region"], parts["service"]), (ACCESS_KEY, region, "execute-api")
    )
    amz_date = captured.header("X-Amz-Date")
    test.assertIsNotNone(amz_date, "no X-Amz-Date header")
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    age = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    test.assertLess(age, 300, "X-Amz-Date is not now")
    test.assertEqual(parts["date"], amz_date[:8])
    signed = parts["signed"].split(";")
    test.assertEqual(signed, sorted(signed))
    for name in ("host", "x-amz-date", "content-type"):
        test.assertIn(name, signed)
    test.assertEqual(captured.header("X-Amz-Security-Token"), token)
    if token is not None:
        test.assertIn("x-amz-security-token", signed)
    headers = {}
    for name in signed:
        value = captured.header(name)
        test.assertIsNotNone(value, f"signed header {name} was not sent")
        headers[name] = value

    def signature(body: bytes) -> str:
        url = f"http://{captured.header('Host')}{captured.path}"
        request = AWSRequest(method=captured.method, url=url, data=body, headers=headers)
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), "execute-api", region)
        canonical = signer.canonical_request(request)
        test.assertTrue(canonical.endswith("\n" + parts["signed"] + "\n" + signer.payload(request)))
        return signer.signature(signer.string_to_sign(request, canonical), request)

    test.assertEqual(parts["signature"], signature(captured.body), "the signature does not verify")
    # The body is signed: another body would not verify.
    test.assertNotEqual(parts["signature"], signature(captured.body + b" "))
    return parts
