"""The command line against a moto server: seal and send, the API key from the environment only,
one-line errors that never show a secret, exit 1 (2 for usage)."""

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

from portal_backup_client import cli

from . import fake_api, stack

CONTEXT = {"clientId": stack.CLIENT_ID, "purpose": "generate-response"}


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = stack.MotoServer().start()
        try:
            cls.key_arn = cls.moto.client("kms").create_key()["KeyMetadata"]["Arn"]
            cls.queue = cls.moto.client("sqs").create_queue(QueueName="cli-requests")["QueueUrl"]
            cls.dir = tempfile.TemporaryDirectory()
            cls.generate_file = os.path.join(cls.dir.name, "generate.json")
            with open(cls.generate_file, "w") as f:
                json.dump(stack.generate_response(), f)
            cls.api = fake_api.FakeApi().start()
        except BaseException:
            cls.moto.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.api.stop()
        cls.moto.stop()
        cls.dir.cleanup()

    def base(self, command="seal", **flags):
        argv = [
            command,
            "--key-arn", self.key_arn,
            "--client-id", stack.CLIENT_ID,
            "--generate-response-file", self.generate_file,
            "--endpoint-url", self.moto.url,
        ]
        for name, value in flags.items():
            argv += [f"--{name.replace('_', '-')}", value]
        return argv

    def run_cli(self, argv, api_key=stack.API_KEY, stdin=None, extra_env=None):
        env = {k: v for k, v in os.environ.items() if k != cli.API_KEY_ENV}
        if api_key is not None:
            env[cli.API_KEY_ENV] = api_key
        env.update(extra_env or {})
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            if stdin is not None:
                with mock.patch.object(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin))):
                    status = cli.main(argv)
            else:
                status = cli.main(argv)
        return status, out.getvalue(), err.getvalue()

    def assertOneLineError(self, err, *mentions):
        self.assertTrue(err.startswith("error: "), err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertEqual(stack.secrets_in(err), [], err)
        for m in mentions:
            self.assertIn(m, err)

    def opens(self, body):
        message = base64.b64decode(body["sealedGenerateResponse"])
        plaintext, _ = stack.esdk_decrypt(self.moto.client("kms"), message, CONTEXT)
        return json.loads(plaintext)

    def test_seal_prints_the_body(self):
        status, out, err = self.run_cli(self.base(idempotency_key="cli-1", backup_mode="SELF_MANAGED"))
        self.assertEqual((status, err), (0, ""))
        body = json.loads(out)
        self.assertEqual(sorted(body), ["backupMode", "clientId", "idempotencyKey", "sealedGenerateResponse"])
        self.assertEqual(stack.secrets_in(out), [])
        self.assertEqual(
            self.opens(body),
            {"clientApiKey": stack.API_KEY, "generateResponse": stack.generate_response()},
        )

    def test_seal_from_stdin(self):
        argv = self.base()
        argv[argv.index(self.generate_file)] = "-"
        status, out, err = self.run_cli(argv, stdin=json.dumps(stack.generate_response()).encode())
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.opens(json.loads(out))["clientApiKey"], stack.API_KEY)

    def test_send_to_the_queue(self):
        status, out, err = self.run_cli(self.base("send", queue_url=self.queue))
        self.assertEqual((status, err), (0, ""))
        sent = json.loads(out)
        self.assertEqual(sorted(sent), ["idempotencyKey", "messageId"])
        sqs = self.moto.client("sqs")
        got = sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)["Messages"]
        self.assertEqual([m["MessageId"] for m in got], [sent["messageId"]])
        self.assertEqual(json.loads(got[0]["Body"])["idempotencyKey"], sent["idempotencyKey"])
        sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=got[0]["ReceiptHandle"])

    def test_send_to_the_api(self):
        creds = {
            "AWS_ACCESS_KEY_ID": fake_api.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": fake_api.SECRET_KEY,
            "AWS_SESSION_TOKEN": fake_api.SESSION_TOKEN,
        }
        outcome = self.api.answer_ok(stack.CLIENT_ID, "cli-api-1")
        status, out, err = self.run_cli(
            self.base("send", api_url=self.api.url, idempotency_key="cli-api-1"), extra_env=creds
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            json.loads(out),
            {"idempotencyKey": "cli-api-1", "messageId": "req-api-1", "outcome": outcome},
        )
        (got,) = self.api.requests
        self.assertEqual(got.path, "/backups")
        fake_api.verify_signature(self, got, region="us-east-1", token=fake_api.SESSION_TOKEN)
        self.assertEqual(self.opens(got.json())["clientApiKey"], stack.API_KEY)
        # --region signs for that region when the API's host names none.
        self.api.answer_ok(stack.CLIENT_ID, "k")
        status, _, err = self.run_cli(
            self.base("send", api_url=self.api.url, region="us-east-1"), extra_env=creds
        )
        self.assertEqual((status, err), (0, ""))
        fake_api.verify_signature(self, self.api.requests[0], region="us-east-1", token=fake_api.SESSION_TOKEN)
        # The function's refusal: exit 1, its code, one line, no value.
        self.api.answer(fake_api.error(422, "CLIENT_MISMATCH", "the signing shares name another client",
                                       retryable=False, step="backup"))
        status, out, err = self.run_cli(self.base("send", api_url=self.api.url), extra_env=creds)
        self.assertEqual((status, out), (1, ""))
        self.assertOneLineError(err, "CLIENT_MISMATCH")
        self.assertNotIn(stack.CLIENT_ID, err)

    def test_the_api_key_comes_from_the_environment_only(self):
        for value in (None, ""):
            status, out, err = self.run_cli(self.base(), api_key=value)
            self.assertEqual((status, out), (1, ""))
            self.assertOneLineError(err, "PORTAL_CLIENT_API_KEY", "clientApiKey")
        # A flag for it does not exist, and is not echoed back.
        status, out, err = self.run_cli(self.base() + ["--client-api-key", stack.API_KEY])
        self.assertEqual((status, out), (2, ""))
        self.assertOneLineError(err, "unrecognized arguments")
        status, _, err = self.run_cli(self.base() + [f"--client-api-key={stack.API_KEY}"])
        self.assertEqual(status, 2)
        self.assertOneLineError(err)

    def test_usage_errors_exit_2(self):
        for argv in (
            [],
            ["bogus"],
            ["seal", "--client-id", "c"],
            self.base("send"),
            self.base("send", queue_url=self.queue, function_name="f"),
            self.base("send", queue_url=self.queue, api_url="https://a.execute-api.us-east-1.amazonaws.com"),
            self.base("send", function_name="f", api_url="https://a.execute-api.us-east-1.amazonaws.com"),
            self.base("seal", api_url="https://a.execute-api.us-east-1.amazonaws.com"),
            self.base("seal", queue_url=self.queue),
        ):
            with self.subTest(argv=argv[:2]):
                status, out, err = self.run_cli(argv)
                self.assertEqual((status, out), (2, ""))
                self.assertOneLineError(err)

    def test_refusals_exit_1_and_name_the_field(self):
        bad_file = os.path.join(self.dir.name, "bad.json")
        with open(bad_file, "w") as f:
            f.write("{not json " + stack.SECRET_SHARE_MARK)
        long_id = "CLIENTVALUE" * 30
        cases = [
            (self.base(idempotency_key="has space"), ["INVALID_INPUT", "idempotencyKey"], "has space"),
            (self.base(backup_mode="CLOUD"), ["INVALID_INPUT", "backupMode"], "CLOUD"),
            (self.base(client_id=long_id), ["INVALID_INPUT", "clientId"], long_id),
            (self.base(client_id="cmSomeoneElse"), ["CLIENT_MISMATCH"], "cmSomeoneElse"),
            (
                [a if a != self.generate_file else bad_file for a in self.base()],
                ["INVALID_INPUT", "generateResponse", "JSON"],
                None,
            ),
            (
                [a if a != self.generate_file else bad_file + ".missing" for a in self.base()],
                ["generate-response-file"],
                None,
            ),
            (
                [a if a != self.key_arn else "alias/portal-backup" for a in self.base()],
                ["INVALID_CONFIG", "alias"],
                None,
            ),
            (
                [a if a != self.key_arn else self.key_arn[:-4] + "0000" for a in self.base()],
                ["SEAL_FAILED", "NotFoundException"],
                None,
            ),
        ]
        for index, (argv, mentions, value) in enumerate(cases):
            with self.subTest(case=index):
                status, out, err = self.run_cli(argv)
                self.assertEqual((status, out), (1, ""))
                self.assertOneLineError(err, *mentions)
                if value:
                    self.assertNotIn(value, err)

    def test_python_dash_m(self):
        env = dict(os.environ, **{cli.API_KEY_ENV: stack.API_KEY})
        done = subprocess.run(
            [sys.executable, "-m", "portal_backup_client", *self.base()],
            env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertEqual(self.opens(json.loads(done.stdout))["clientApiKey"], stack.API_KEY)
        done = subprocess.run(
            [sys.executable, "-m", "portal_backup_client", "seal", "--nope", stack.API_KEY],
            env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual((done.returncode, done.stdout), (2, ""))
        self.assertOneLineError(done.stderr)


if __name__ == "__main__":
    unittest.main()
