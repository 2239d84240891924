"""Sealing against a moto server: the message opens with the AWS Encryption SDK under the
required context, exactly as the function opens it, and its header is what the function takes."""

import base64
import json
import unittest

from portal_backup_client import BackupClient, SealFailed, read_header

from . import stack

CONTEXT = {"clientId": stack.CLIENT_ID, "purpose": "generate-response"}


class SealingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = stack.MotoServer().start()
        try:
            cls.key_arn = cls.moto.client("kms").create_key(Description="portal-backup test")["KeyMetadata"]["Arn"]
        except BaseException:
            cls.moto.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    def setUp(self):
        # A client of its own per test, every call it makes recorded.
        self.kms = self.moto.client("kms")
        self.calls = stack.record_calls(self.kms)
        self.client = BackupClient(self.kms, self.key_arn)

    def sealed(self, body_text):
        body = json.loads(body_text)
        return body, base64.b64decode(body["sealedGenerateResponse"], validate=True)

    def test_round_trip_under_the_required_context(self):
        body_text = self.client.seal(stack.request(idempotencyKey="wallet-1", backupMode="SELF_MANAGED"))
        body, message = self.sealed(body_text)
        self.assertEqual(
            body,
            {
                "clientId": stack.CLIENT_ID,
                "idempotencyKey": "wallet-1",
                "backupMode": "SELF_MANAGED",
                "sealedGenerateResponse": body["sealedGenerateResponse"],
            },
        )
        self.assertEqual(stack.secrets_in(body_text), [], "nothing secret in the clear")
        plaintext, header = stack.esdk_decrypt(self.kms, message, CONTEXT)
        self.assertEqual(
            json.loads(plaintext),
            {"clientApiKey": stack.API_KEY, "generateResponse": stack.generate_response()},
        )
        self.assertEqual(header.algorithm.name, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY")
        self.assertEqual(dict(header.encryption_context), CONTEXT)
        self.assertEqual(len(header.encrypted_data_keys), 1)

    def test_the_header_is_what_the_function_takes(self):
        _, message = self.sealed(self.client.seal(stack.request()))
        # Read byte by byte, as the function's read_header does (not by the SDK that wrote it).
        h = read_header(message)
        self.assertEqual(h.version, 2)
        self.assertEqual(h.suite, 0x0478)
        self.assertEqual(
            h.stored_context,
            [("clientId", stack.CLIENT_ID), ("purpose", "generate-response")],
            "exactly the two entries, nothing else",
        )
        self.assertEqual(len(h.data_keys), 1)
        self.assertEqual(h.data_keys[0].provider_id, "aws-kms")
        self.assertEqual(h.data_keys[0].provider_info, self.key_arn)

    def test_no_describe_key_only_generate_data_key(self):
        self.client.seal(stack.request())
        self.client.seal(stack.request(generateResponse=json.dumps(stack.generate_response())))
        self.assertEqual(self.calls, ["GenerateDataKey", "GenerateDataKey"])
        self.assertNotIn("DescribeKey", self.calls)

    def test_a_string_generate_response_is_sealed_as_sent(self):
        text = json.dumps(stack.generate_response(), indent=1)
        _, message = self.sealed(self.client.seal(stack.request(generateResponse=text)))
        plaintext, _ = stack.esdk_decrypt(self.kms, message, CONTEXT)
        self.assertEqual(json.loads(plaintext)["generateResponse"], text)

    def test_another_context_does_not_open_it(self):
        _, message = self.sealed(self.client.seal(stack.request()))
        for other in (
            {"clientId": "cmSomeoneElse", "purpose": "generate-response"},
            {"clientId": stack.CLIENT_ID, "purpose": "backup-response"},
        ):
            with self.subTest(context=other), stack.quiet_esdk():
                with self.assertRaises(Exception):
                    stack.esdk_decrypt(self.kms, message, other)

    def test_kms_refusals_name_the_kms_error_only(self):
        missing = self.key_arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
        with self.assertRaises(SealFailed) as caught:
            BackupClient(self.kms, missing).seal(stack.request())
        e = caught.exception
        self.assertEqual(e.code, "SEAL_FAILED")
        self.assertIn("NotFoundException", str(e))
        self.assertFalse(e.retryable)
        self.assertEqual(stack.secrets_in(str(e)), [])
        self.assertNotIn(stack.CLIENT_ID, str(e))
        self.assertIsNone(e.__cause__, "the SDK's error (and its text) is not chained")


if __name__ == "__main__":
    unittest.main()
