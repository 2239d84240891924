"""Sending: SQS queues of a moto server (standard and FIFO), a direct invoke and the operator
function's list (a stand-in Lambda client: moto would need Docker to run a function)."""

import base64
import io
import json
import unittest

from portal_backup_client import (
    BackupClient,
    BackupFailed,
    InvalidInput,
    OutcomeTimeout,
    SendFailed,
    wait_for_outcome,
)
from portal_backup_client.validation import id_problem

from . import stack

CONTEXT = {"clientId": stack.CLIENT_ID, "purpose": "generate-response"}


class FakeLambda:
    """Answers each invoke with the next of `answers`: a dict (the function's answer) or
    ("error", {"errorType", "errorMessage"}) (a function error). Records every invoke."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.invokes = []

    def invoke(self, **kwargs):
        self.invokes.append(kwargs)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        response = {"StatusCode": 200, "ResponseMetadata": {"RequestId": f"req-{len(self.invokes)}"}}
        if isinstance(answer, tuple):
            response["FunctionError"] = "Unhandled"
            answer = answer[1]
        response["Payload"] = io.BytesIO(json.dumps(answer).encode())
        return response

    def payloads(self):
        return [json.loads(i["Payload"]) for i in self.invokes]


def summary(key, status):
    s = {
        "key": key,
        "status": status,
        "backupMode": "SELF_MANAGED",
        "signingSharePairIds": ["cmsecp0001", "cmed0001"],
        "createdAt": 1,
        "updatedAt": 2,
    }
    if status == "COMPLETED":
        s.update(backupSharePairIds=["bsecp", "bed"], completedAt=3)
    return s


def listing(*backups):
    return {"clientId": stack.CLIENT_ID, "backups": list(backups), "unreadable": {"count": 0, "keys": []}}


class SendingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = stack.MotoServer().start()
        try:
            cls.key_arn = cls.moto.client("kms").create_key()["KeyMetadata"]["Arn"]
            sqs = cls.moto.client("sqs")
            cls.standard = sqs.create_queue(QueueName="backup-requests")["QueueUrl"]
            cls.fifo = sqs.create_queue(
                QueueName="backup-requests.fifo", Attributes={"FifoQueue": "true"}
            )["QueueUrl"]
        except BaseException:
            cls.moto.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    def setUp(self):
        self.kms = self.moto.client("kms")
        self.kms_calls = stack.record_calls(self.kms)
        self.sqs = self.moto.client("sqs")

    def receive(self, queue_url):
        got = self.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        self.assertEqual(len(got), 1)
        self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=got[0]["ReceiptHandle"])
        return got[0]

    def opens(self, body):
        message = base64.b64decode(body["sealedGenerateResponse"])
        # Opened with a client of its own: the sender's calls stay the sender's.
        plaintext, _ = stack.esdk_decrypt(self.moto.client("kms"), message, CONTEXT)
        return json.loads(plaintext)

    def test_fifo_send_sets_the_group_and_the_deduplication_id(self):
        client = BackupClient(self.kms, self.key_arn, sqs_client=self.sqs, queue_url=self.fifo)
        sent = client.back_up(stack.request(idempotencyKey="wallet-key-1", backupMode="PORTAL_MANAGED"))
        self.assertEqual(sent["idempotencyKey"], "wallet-key-1")
        got = self.receive(self.fifo)
        self.assertEqual(sent["messageId"], got["MessageId"])
        self.assertEqual(got["Attributes"]["MessageGroupId"], stack.CLIENT_ID)
        self.assertEqual(got["Attributes"]["MessageDeduplicationId"], "wallet-key-1")
        body = json.loads(got["Body"])
        self.assertEqual(sorted(body), ["backupMode", "clientId", "idempotencyKey", "sealedGenerateResponse"])
        self.assertEqual(body["idempotencyKey"], "wallet-key-1")
        self.assertEqual(body["backupMode"], "PORTAL_MANAGED")
        self.assertEqual(stack.secrets_in(got["Body"]), [])
        self.assertEqual(self.opens(body)["clientApiKey"], stack.API_KEY)
        self.assertNotIn("DescribeKey", self.kms_calls)

    def test_fifo_group_of_a_client_id_sqs_does_not_take(self):
        odd = "cm client with spaces"
        client = BackupClient(self.kms, self.key_arn, sqs_client=self.sqs, queue_url=self.fifo)
        sent = client.back_up(stack.request(clientId=odd, generateResponse=stack.generate_response(odd)))
        got = self.receive(self.fifo)
        self.assertTrue(got["Attributes"]["MessageGroupId"].startswith("sha256-"))
        self.assertEqual(got["Attributes"]["MessageDeduplicationId"], sent["idempotencyKey"])
        self.assertEqual(json.loads(got["Body"])["clientId"], odd)

    def test_standard_queue_and_a_generated_idempotency_key(self):
        client = BackupClient(self.kms, self.key_arn, sqs_client=self.sqs, queue_url=self.standard)
        sent = client.back_up(stack.request())
        self.assertEqual(sorted(sent), ["idempotencyKey", "messageId"])
        self.assertIsNone(id_problem(sent["idempotencyKey"]))
        got = self.receive(self.standard)
        self.assertEqual(got["MessageId"], sent["messageId"])
        self.assertNotIn("MessageGroupId", got.get("Attributes", {}))
        body = json.loads(got["Body"])
        self.assertEqual(body["idempotencyKey"], sent["idempotencyKey"])
        self.assertNotIn("backupMode", body, "absent: the deployment's default")
        self.assertEqual(self.opens(body)["generateResponse"], stack.generate_response())
        again = client.back_up(stack.request())
        self.assertNotEqual(again["idempotencyKey"], sent["idempotencyKey"])
        self.receive(self.standard)
        self.assertEqual(self.kms_calls, ["GenerateDataKey", "GenerateDataKey"])

    def test_refusals_send_nothing(self):
        sqs_calls = stack.record_calls(self.sqs)
        client = BackupClient(self.kms, self.key_arn, sqs_client=self.sqs, queue_url=self.standard)
        with self.assertRaises(InvalidInput) as caught:
            client.back_up(stack.request(idempotencyKey="not/allowed"))
        self.assertEqual(caught.exception.field, "idempotencyKey")
        self.assertEqual((sqs_calls, self.kms_calls), ([], []))

    def test_a_queue_that_does_not_exist(self):
        missing = self.standard.rsplit("/", 1)[0] + "/no-such-queue"
        client = BackupClient(self.kms, self.key_arn, sqs_client=self.sqs, queue_url=missing)
        with self.assertRaises(SendFailed) as caught:
            client.back_up(stack.request())
        e = caught.exception
        self.assertEqual(e.code, "SEND_FAILED")
        self.assertIn("SendMessage", str(e))
        self.assertEqual(stack.secrets_in(str(e)), [])

    def test_direct_invoke_answers_the_outcome(self):
        outcome = {
            "clientId": stack.CLIENT_ID,
            "backupMode": "SELF_MANAGED",
            "backupSharePairIds": ["bsecp", "bed"],
            "status": "COMPLETED",
        }
        lam = FakeLambda(outcome)
        client = BackupClient(self.kms, self.key_arn, lambda_client=lam, function_name="stack-backup")
        sent = client.back_up(stack.request(idempotencyKey="k-direct"))
        self.assertEqual(sent, {"idempotencyKey": "k-direct", "messageId": "req-1", "outcome": outcome})
        (invoke,) = lam.invokes
        self.assertEqual(invoke["FunctionName"], "stack-backup")
        self.assertEqual(invoke["InvocationType"], "RequestResponse")
        self.assertEqual(stack.secrets_in(invoke["Payload"].decode()), [])
        body = lam.payloads()[0]
        self.assertEqual(sorted(body), ["clientId", "idempotencyKey", "sealedGenerateResponse"])
        self.assertEqual(self.opens(body)["clientApiKey"], stack.API_KEY)

    def test_direct_invoke_refusal_keeps_the_function_code(self):
        for error_type, retryable in (("INVALID_SEALED_INPUT", False), ("PORTAL_RATE_LIMITED", True)):
            with self.subTest(error_type=error_type):
                lam = FakeLambda(("error", {"errorType": error_type, "errorMessage": "the step failed"}))
                client = BackupClient(self.kms, self.key_arn, lambda_client=lam, function_name="f")
                with self.assertRaises(BackupFailed) as caught:
                    client.back_up(stack.request())
                self.assertEqual(caught.exception.code, error_type)
                self.assertEqual(caught.exception.retryable, retryable)
                self.assertEqual(str(caught.exception), f"{error_type}: the step failed")


class WaitForOutcomeTest(unittest.TestCase):
    def test_polls_list_until_the_backup_is_completed(self):
        done = summary("k-1", "COMPLETED")
        lam = FakeLambda(
            listing(),
            listing(summary("other", "COMPLETED"), summary("k-1", "IN_PROGRESS")),
            listing(summary("k-1", "STORED")),
            listing(summary("other", "COMPLETED"), done),
        )
        slept = []
        got = wait_for_outcome(lam, "stack-operator", stack.CLIENT_ID, "k-1", 60, interval=0.5, sleep=slept.append)
        self.assertEqual(got, done)
        self.assertEqual(slept, [0.5, 0.5, 0.5])
        self.assertEqual(lam.payloads(), [{"action": "list", "clientId": stack.CLIENT_ID}] * 4)
        self.assertEqual({i["FunctionName"] for i in lam.invokes}, {"stack-operator"})

    def test_times_out_with_the_last_status(self):
        lam = FakeLambda(listing(summary("k-1", "IN_PROGRESS")))
        with self.assertRaises(OutcomeTimeout) as caught:
            wait_for_outcome(lam, "op", stack.CLIENT_ID, "k-1", 0.05, interval=0.01)
        e = caught.exception
        self.assertIsInstance(e, TimeoutError)
        self.assertEqual((e.code, e.last_status), ("TIMEOUT", "IN_PROGRESS"))
        self.assertGreater(len(lam.invokes), 1)
        lam = FakeLambda(listing())
        with self.assertRaises(OutcomeTimeout) as caught:
            wait_for_outcome(lam, "op", stack.CLIENT_ID, "k-1", 0, interval=0.01)
        self.assertIsNone(caught.exception.last_status)
        self.assertEqual(len(lam.invokes), 1, "a zero timeout still looks once")

    def test_the_default_key_of_a_request_sent_without_one(self):
        key = "cmsecp0001.cmed0001"
        lam = FakeLambda(listing(summary(key, "COMPLETED")))
        self.assertEqual(wait_for_outcome(lam, "op", stack.CLIENT_ID, key, 1)["key"], key)

    def test_refusals(self):
        lam = FakeLambda(("error", {"errorType": "INVALID_INPUT", "errorMessage": "field `clientId` is required"}))
        with self.assertRaises(BackupFailed) as caught:
            wait_for_outcome(lam, "op", stack.CLIENT_ID, "k-1", 1)
        self.assertEqual(caught.exception.code, "INVALID_INPUT")
        for client_id, key, field in (
            ("", "k", "clientId"),
            ("c", "a b", "idempotencyKey"),
            ("c", None, "idempotencyKey"),
            ("c", "a.b.c", "idempotencyKey"),
            ("c", "a.", "idempotencyKey"),
            ("c", 5, "idempotencyKey"),
        ):
            with self.assertRaises(InvalidInput) as caught:
                wait_for_outcome(FakeLambda(listing()), "op", client_id, key, 1)
            self.assertEqual(caught.exception.field, field)


if __name__ == "__main__":
    unittest.main()
