"""Sending to the function's HTTP API: POST /backups with the sealed body, signed with SigV4 for
execute-api (the signature checked, recomputed from what a local server received), and its
answers: the outcome, the function's errors, API Gateway's own refusals."""

import base64
import json
import socket
import unittest

import boto3

from portal_backup_client import (
    BackupClient,
    BackupFailed,
    ConfigurationError,
    InvalidInput,
    SendFailed,
)
from portal_backup_client.api import backups_url, region_of_api_url, retry_after_seconds

from . import fake_api, stack

CONTEXT = {"clientId": stack.CLIENT_ID, "purpose": "generate-response"}


def session(token=fake_api.SESSION_TOKEN):
    return boto3.Session(
        aws_access_key_id=fake_api.ACCESS_KEY,
        aws_secret_access_key=fake_api.SECRET_KEY,
        aws_session_token=token,
    )


class NoCredentials:
    def get_credentials(self):
        return None


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = stack.MotoServer().start()
        try:
            cls.key_arn = cls.moto.client("kms").create_key()["KeyMetadata"]["Arn"]
            cls.api = fake_api.FakeApi().start()
        except BaseException:
            cls.moto.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.api.stop()
        cls.moto.stop()

    def setUp(self):
        self.kms = self.moto.client("kms")

    def client(self, api_url=None, **kw):
        kw.setdefault("session", session())
        return BackupClient(self.kms, self.key_arn, api_url=api_url or self.api.url, **kw)

    def opens(self, body):
        message = base64.b64decode(body["sealedGenerateResponse"])
        plaintext, _ = stack.esdk_decrypt(self.moto.client("kms"), message, CONTEXT)
        return json.loads(plaintext)

    def assertNoValue(self, text):
        self.assertEqual(stack.secrets_in(text), [], text)
        self.assertNotIn(stack.CLIENT_ID, text)

    def test_posts_the_sealed_body_signed_and_answers_the_outcome(self):
        outcome = self.api.answer_ok(stack.CLIENT_ID, "api-key-1", request_id="Zk3xQjVPIAMEbQ=")
        client = self.client()
        self.assertEqual(client.region, "us-east-1", "the key ARN's: 127.0.0.1 names no region")
        sent = client.back_up(stack.request(idempotencyKey="api-key-1", backupMode="PORTAL_MANAGED"))
        self.assertEqual(
            sent, {"idempotencyKey": "api-key-1", "messageId": "Zk3xQjVPIAMEbQ=", "outcome": outcome}
        )
        (got,) = self.api.requests
        self.assertEqual((got.method, got.path), ("POST", "/backups"))
        self.assertEqual(got.header("Content-Type"), "application/json")
        fake_api.verify_signature(self, got, region="us-east-1", token=fake_api.SESSION_TOKEN)
        body = got.json()
        self.assertEqual(sorted(body), ["backupMode", "clientId", "idempotencyKey", "sealedGenerateResponse"])
        self.assertEqual((body["clientId"], body["idempotencyKey"]), (stack.CLIENT_ID, "api-key-1"))
        self.assertEqual(stack.secrets_in(got.body.decode()), [])
        self.assertEqual(
            self.opens(body),
            {"clientApiKey": stack.API_KEY, "generateResponse": stack.generate_response()},
        )
        # Nothing of the request outside the body: no header carries the key or a share.
        self.assertEqual(stack.secrets_in(json.dumps(got.header_pairs)), [])

    def test_the_region_argument_a_stage_and_a_url_that_names_the_route(self):
        for api_url, path in (
            (self.api.url + "/prod", "/prod/backups"),
            (self.api.url + "/prod/", "/prod/backups"),
            (self.api.url + "/backups", "/backups"),  # the stack's ApiUrl output names the route
        ):
            with self.subTest(api_url=api_url):
                self.api.answer_ok(stack.CLIENT_ID, "k", request_id=None)
                client = self.client(api_url, region="eu-west-1", session=session(token=None))
                sent = client.back_up(stack.request())
                self.assertEqual(sent["messageId"], "", "no request id header: empty")
                self.assertEqual(sent["outcome"]["status"], "COMPLETED")
                (got,) = self.api.requests
                self.assertEqual(got.path, path)
                fake_api.verify_signature(self, got, region="eu-west-1", token=None)
                self.assertEqual(got.json()["idempotencyKey"], sent["idempotencyKey"])

    def test_a_rest_api_request_id(self):
        self.api.answer((200, {"x-amzn-RequestId": "rest-req-1"}, json.dumps(fake_api.outcome("c", "k")).encode()))
        self.assertEqual(self.client().back_up(stack.request())["messageId"], "rest-req-1")

    def test_a_400_keeps_the_function_code_and_quotes_no_value(self):
        self.api.answer(
            fake_api.error(400, "INVALID_SEALED_INPUT", "the sealed generate response does not open",
                           retryable=False, step="unseal", field="sealedGenerateResponse")
        )
        with self.assertRaises(BackupFailed) as caught:
            self.client().back_up(stack.request())
        e = caught.exception
        self.assertEqual((e.code, e.retryable, e.retry_after), ("INVALID_SEALED_INPUT", False, None))
        self.assertEqual((e.field, e.step), ("sealedGenerateResponse", "unseal"))
        self.assertEqual(str(e), "INVALID_SEALED_INPUT: the sealed generate response does not open")
        self.assertNoValue(str(e))
        self.assertNoValue(repr(e.args))
        self.assertEqual(len(self.api.requests), 1)

    def test_a_503_with_retry_after_is_retryable(self):
        self.api.answer(
            fake_api.error(503, "PORTAL_RATE_LIMITED", "Portal answered 429 at step backup",
                           retryable=True, step="backup", retry_after="60")
        )
        with self.assertRaises(BackupFailed) as caught:
            self.client().back_up(stack.request())
        e = caught.exception
        self.assertEqual((e.code, e.retryable, e.retry_after, e.step), ("PORTAL_RATE_LIMITED", True, 60.0, "backup"))
        self.assertNoValue(str(e))
        # Retry-After alone makes an answer retryable, whatever its body says.
        self.api.answer(fake_api.error(409, "SOMETHING_NEW", "busy", retryable=False, step="backup",
                                       retry_after="5"))
        with self.assertRaises(BackupFailed) as caught:
            self.client().back_up(stack.request())
        self.assertEqual((caught.exception.retryable, caught.exception.retry_after), (True, 5.0))

    def test_api_gateway_refusals_quote_nothing_of_the_answer(self):
        leak = json.dumps({"message": f"The request signature we calculated ... {stack.CLIENT_ID} {stack.API_KEY}"})
        cases = (
            (403, {"x-amzn-ErrorType": "InvalidSignatureException:http://internal.amazon.com/"}, False,
             None, "InvalidSignatureException"),
            (429, {}, True, None, "HTTP 429"),
            (503, {"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"}, True, "date", "HTTP 503"),
            (504, {}, True, None, "idempotency key"),
        )
        for status, headers, retryable, after, mention in cases:
            with self.subTest(status=status):
                self.api.answer((status, headers, leak.encode()))
                with self.assertRaises(SendFailed) as caught:
                    self.client().back_up(stack.request())
                e = caught.exception
                self.assertEqual((e.code, e.retryable), ("SEND_FAILED", retryable))
                self.assertIn(f"HTTP {status}", str(e))
                self.assertIn(mention, str(e))
                self.assertNotIn("signature we calculated", str(e))
                self.assertNoValue(str(e))
                if after == "date":
                    self.assertGreater(e.retry_after, 0)
                else:
                    self.assertIsNone(e.retry_after)

    def test_an_answer_that_is_not_json(self):
        self.api.answer((200, {}, b"<html>"))
        with self.assertRaises(SendFailed) as caught:
            self.client().back_up(stack.request())
        self.assertIn("JSON object", str(caught.exception))

    def test_an_api_that_cannot_be_reached(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(SendFailed) as caught:
            self.client(f"http://127.0.0.1:{port}").back_up(stack.request())
        e = caught.exception
        self.assertTrue(e.retryable)
        self.assertIn("could not be reached", str(e))
        self.assertNotIn(str(port), str(e), "botocore's text (the URL) is not passed on")

    def test_refusals_send_nothing(self):
        self.api.answer_ok(stack.CLIENT_ID, "k")
        with self.assertRaises(InvalidInput):
            self.client().back_up(stack.request(idempotencyKey="not/allowed"))
        with self.assertRaises(ConfigurationError) as caught:
            self.client(session=NoCredentials()).back_up(stack.request())
        self.assertIn("credentials", str(caught.exception))
        self.assertEqual(self.api.requests, [])

    def test_configuration(self):
        sqs = self.moto.client("sqs")
        bad = (
            dict(api_url=self.api.url, sqs_client=sqs, queue_url="https://sqs.example/q"),
            dict(api_url=self.api.url, lambda_client=object(), function_name="f"),
            dict(api_url="http://abc.execute-api.us-east-1.amazonaws.com"),  # not https
            dict(api_url="https://abc.execute-api.us-east-1.amazonaws.com/?x=1"),
            dict(api_url="https://user:pw@abc.execute-api.us-east-1.amazonaws.com"),
            dict(api_url="backups"),
            dict(api_url=""),
            dict(api_url=self.api.url, region="not a region"),
            dict(session=session()),  # a session without the API
            dict(region="us-east-1"),
            dict(api_url=self.api.url, timeout=0),
        )
        for kw in bad:
            with self.subTest(kw=sorted(kw)), self.assertRaises(ConfigurationError):
                BackupClient(self.kms, self.key_arn, **kw)

    def test_the_region_of_the_api_host(self):
        client = self.client("https://a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com")
        self.assertEqual(client.region, "eu-central-1", "the API's region, not the key's")
        self.assertEqual(client.api_url, "https://a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com")
        self.assertEqual(self.client("https://backup.example.com/v1").region, "us-east-1")
        self.assertEqual(
            self.client("https://a1.execute-api.eu-central-1.amazonaws.com", region="us-west-2").region,
            "us-west-2",
        )
        self.assertEqual(region_of_api_url("https://x.execute-api.cn-north-1.amazonaws.com.cn/b"), "cn-north-1")
        self.assertIsNone(region_of_api_url("https://execute-api.example.com"))
        self.assertEqual(
            backups_url("https://a1.execute-api.us-east-1.amazonaws.com/backups/"),
            "https://a1.execute-api.us-east-1.amazonaws.com/backups",
        )
        self.assertEqual(retry_after_seconds("30"), 30.0)
        self.assertEqual(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), 0.0)
        self.assertIsNone(retry_after_seconds("soon"))
        self.assertIsNone(retry_after_seconds(None))


if __name__ == "__main__":
    unittest.main()
