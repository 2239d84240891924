"""Validation and configuration refusals: each names its field (or setting), never a value, and
none reaches the network (no moto here: the KMS client's endpoint is a closed port)."""

import copy
import json
import unittest

import boto3
import botocore.config

from portal_backup_client import (
    BackupClient,
    BackupClientError,
    ClientMismatch,
    ConfigurationError,
    InvalidInput,
    SealFailed,
    encryption_context,
    message_group_id,
    new_idempotency_key,
    parse_key_arn,
    validate,
)
from portal_backup_client.validation import id_problem

from . import stack

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ODD_CLIENT = "CLIENTVALUE-\u00e9-distinctive"


def offline_kms(region=stack.REGION):
    """A KMS client whose every call would fail to connect; its calls are recorded."""
    kms = boto3.session.Session().client(
        "kms",
        region_name=region,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    return kms, stack.record_calls(kms)


def with_generate(mutate):
    r = stack.request()
    g = copy.deepcopy(r["generateResponse"])
    mutate(g)
    r["generateResponse"] = g
    return r


def drop(d, *path):
    for p in path[:-1]:
        d = d[p]
    del d[path[-1]]


def put(d, value, *path):
    for p in path[:-1]:
        d = d[p]
    d[path[-1]] = value


class ValidationTest(unittest.TestCase):
    def assertSilent(self, err):
        for text in (str(err), repr(err), " ".join(map(str, err.args))):
            self.assertEqual(stack.secrets_in(text), [], text)
            self.assertNotIn(ODD_CLIENT, text)
            self.assertNotIn(stack.CLIENT_ID, text)

    def test_each_fault_names_its_field_and_never_a_value(self):
        base = stack.request
        cases = [
            ({k: v for k, v in base().items() if k != "clientId"}, "clientId"),
            (base(clientId=5), "clientId"),
            (base(clientId=""), "clientId"),
            (base(clientId=ODD_CLIENT + "\n"), "clientId"),
            (base(clientId=ODD_CLIENT + "\x7f"), "clientId"),
            (base(clientId=ODD_CLIENT + "x" * 256), "clientId"),
            ({k: v for k, v in base().items() if k != "clientApiKey"}, "clientApiKey"),
            (base(clientApiKey=5), "clientApiKey"),
            (base(clientApiKey=""), "clientApiKey"),
            (base(clientApiKey=None), "clientApiKey"),
            ({k: v for k, v in base().items() if k != "generateResponse"}, "generateResponse"),
            (base(generateResponse="{not json " + stack.SECRET_SHARE_MARK), "generateResponse"),
            (base(generateResponse=3), "generateResponse"),
            (base(generateResponse=["a"]), "generateResponse"),
            (base(generateResponse=json.dumps([stack.SECRET_SHARE_MARK])), "generateResponse"),
            (with_generate(lambda g: drop(g, "ED25519")), "generateResponse"),
            (with_generate(lambda g: drop(g, "SECP256K1")), "generateResponse"),
            (with_generate(lambda g: put(g, {"share": "x", "id": "p"}, "P256")), "generateResponse"),
            (with_generate(lambda g: put(g, dict(g["SECP256K1"]), "secp256k1")), "generateResponse"),
            (with_generate(lambda g: put(g, "cmed0001", "SECP256K1", "id")), "generateResponse"),
            (with_generate(lambda g: put(g, "a/b", "SECP256K1", "id")), "generateResponse.SECP256K1.id"),
            (with_generate(lambda g: put(g, "", "SECP256K1", "id")), "generateResponse.SECP256K1.id"),
            (with_generate(lambda g: put(g, 7, "SECP256K1", "id")), "generateResponse.SECP256K1.id"),
            (with_generate(lambda g: drop(g, "ED25519", "id")), "generateResponse.ED25519.id"),
            (with_generate(lambda g: put(g, 1, "SECP256K1", "share")), "generateResponse.SECP256K1.share"),
            (with_generate(lambda g: put(g, "", "ED25519", "share")), "generateResponse.ED25519.share"),
            (with_generate(lambda g: put(g, "A" * (64 * 1024 + 1), "ED25519", "share")),
             "generateResponse.ED25519.share"),
            (with_generate(lambda g: drop(g, "ED25519", "share")), "generateResponse.ED25519.share"),
            (with_generate(lambda g: put(g, stack.SECRET_SHARE_MARK, "ED25519")), "generateResponse.ED25519"),
            (base(backupMode="CLOUD"), "backupMode"),
            (base(backupMode="self_managed"), "backupMode"),
            (base(backupMode=1), "backupMode"),
            (base(idempotencyKey=""), "idempotencyKey"),
            (base(idempotencyKey="a b"), "idempotencyKey"),
            (base(idempotencyKey="k\u00e9y"), "idempotencyKey"),
            (base(idempotencyKey="x" * 129), "idempotencyKey"),
            (base(idempotencyKey=7), "idempotencyKey"),
            (base(extra=stack.API_KEY), "extra"),
            (base(sealedGenerateResponse="AgR4"), "sealedGenerateResponse"),
            (["not", "an", "object"], "body"),
        ]
        for index, (req, field) in enumerate(cases):
            with self.subTest(case=index, field=field):
                with self.assertRaises(InvalidInput) as caught:
                    validate(req)
                e = caught.exception
                self.assertEqual(e.field, field)
                self.assertEqual(e.code, "INVALID_INPUT")
                self.assertTrue(str(e).startswith(f"INVALID_INPUT: field `{field}` "), str(e))
                self.assertIsInstance(e, BackupClientError)
                self.assertSilent(e)

    def test_valid_requests_are_taken(self):
        v = validate(stack.request())
        self.assertEqual(v.client_id, stack.CLIENT_ID)
        self.assertEqual(v.signing_share_pair_ids, ("cmsecp0001", "cmed0001"))
        self.assertIsNone(v.idempotency_key)
        self.assertIsNone(v.backup_mode)
        self.assertEqual(stack.secrets_in(repr(v)), [])
        # Portal's lowercase curve keys, and the answer as a JSON string (kept as sent).
        g = stack.generate_response()
        lower = {"secp256k1": g["SECP256K1"], "ed25519": g["ED25519"]}
        self.assertEqual(validate(stack.request(generateResponse=lower)).signing_share_pair_ids,
                         ("cmsecp0001", "cmed0001"))
        text = json.dumps(g)
        self.assertEqual(validate(stack.request(generateResponse=text)).generate_response, text)
        for mode in ("SELF_MANAGED", "PORTAL_MANAGED"):
            self.assertEqual(validate(stack.request(backupMode=mode)).backup_mode, mode)
        self.assertEqual(validate(stack.request(backupMode=None)).backup_mode, None)
        key = "a-Z_9" + "x" * 123
        self.assertEqual(validate(stack.request(idempotencyKey=key)).idempotency_key, key)
        # A client id of 256 UTF-8 bytes, not characters, with no control character.
        long_id = "\u00e9" * 128
        r = stack.request(clientId=long_id, generateResponse=stack.generate_response(long_id))
        self.assertEqual(validate(r).client_id, long_id)
        with self.assertRaises(InvalidInput):
            validate(stack.request(clientId=long_id + "a",
                                   generateResponse=stack.generate_response(long_id + "a")))

    def test_shares_must_name_the_client(self):
        for g in (
            stack.generate_response("cmAnotherClient"),
            # A share that names no client (not base64 of JSON): the function refuses it too.
            with_generate(lambda g: put(g, "c2VjcmV0MQ==", "ED25519", "share"))["generateResponse"],
        ):
            with self.assertRaises(ClientMismatch) as caught:
                validate(stack.request(generateResponse=g))
            self.assertEqual(caught.exception.code, "CLIENT_MISMATCH")
            self.assertSilent(caught.exception)
        # A share given as JSON (not base64) and one without padding both name their client.
        g = stack.generate_response()
        g["SECP256K1"]["share"] = json.dumps({"clientId": stack.CLIENT_ID, "x": 1})
        g["ED25519"]["share"] = g["ED25519"]["share"].rstrip("=")
        validate(stack.request(generateResponse=g))

    def test_ids(self):
        self.assertIsNone(id_problem("cm0r6nkek00ej10dwwx8wdjmf"))
        for bad in ["", "a/b", "../x", "a b", "\u00e9", "x" * 129, "a\n"]:
            self.assertIsNotNone(id_problem(bad), bad)
        for _ in range(50):
            key = new_idempotency_key()
            self.assertIsNone(id_problem(key), key)
        self.assertNotEqual(new_idempotency_key(), new_idempotency_key())
        self.assertEqual(message_group_id("cm0r6nkek00ej10dwwx8wdjmf"), "cm0r6nkek00ej10dwwx8wdjmf")
        hashed = message_group_id("a client id with spaces")
        self.assertTrue(hashed.startswith("sha256-") and len(hashed) == 71)
        self.assertEqual(message_group_id("x" * 129), message_group_id("x" * 129))

    def test_the_context_is_exactly_two_entries(self):
        self.assertEqual(encryption_context("c1"), {"clientId": "c1", "purpose": "generate-response"})


class KeyArnTest(unittest.TestCase):
    def test_an_alias_or_a_key_id_is_refused_without_a_kms_call(self):
        kms, calls = offline_kms()
        for bad, says in [
            ("alias/portal-backup", "alias"),
            ("arn:aws:kms:us-east-1:111122223333:alias/portal-backup", "alias"),
            ("1234abcd-12ab-34cd-56ef-1234567890ab", "bare key id"),
            ("mrk-1234abcd12ab34cd56ef1234567890ab", "bare key id"),
            ("arn:aws:kms:us-east-1:1111:key/1234", "not a KMS key ARN"),
            ("arn:aws:s3:::bucket", "not a KMS key ARN"),
            ("", "required"),
            (None, "required"),
        ]:
            with self.subTest(key=bad):
                with self.assertRaises(ConfigurationError) as caught:
                    BackupClient(kms, bad)
                self.assertEqual(caught.exception.code, "INVALID_CONFIG")
                self.assertIn(says, str(caught.exception))
                self.assertIn("key ARN", str(caught.exception))
        self.assertEqual(calls, [])

    def test_key_arns_of_every_partition_and_multi_region_keys_are_taken(self):
        for arn, region in [
            (ARN, "us-east-1"),
            ("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", "eu-west-1"),
            ("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab", "us-gov-west-1"),
            ("arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab", "cn-north-1"),
        ]:
            with self.subTest(arn=arn):
                self.assertEqual(parse_key_arn(arn)["region"], region)
                kms, calls = offline_kms(region)
                BackupClient(kms, arn)
                self.assertEqual(calls, [], "building the client calls nothing")

    def test_a_kms_client_in_another_region_is_refused(self):
        kms, _ = offline_kms("eu-west-1")
        with self.assertRaises(ConfigurationError) as caught:
            BackupClient(kms, ARN)
        self.assertIn("region", str(caught.exception))

    def test_destinations_come_in_pairs(self):
        kms, _ = offline_kms()
        sqs = boto3.session.Session().client("sqs", region_name=stack.REGION)
        lam = boto3.session.Session().client("lambda", region_name=stack.REGION)
        for kwargs in [
            {"sqs_client": sqs},
            {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q"},
            {"lambda_client": lam},
            {"function_name": "f"},
            {"sqs_client": sqs, "queue_url": "https://q", "lambda_client": lam, "function_name": "f"},
        ]:
            with self.subTest(kwargs=sorted(kwargs)):
                with self.assertRaises(ConfigurationError):
                    BackupClient(kms, ARN, **kwargs)
        with self.assertRaises(ConfigurationError):
            BackupClient(kms, ARN).back_up(stack.request())

    def test_seal_refuses_before_any_kms_call(self):
        kms, calls = offline_kms()
        client = BackupClient(kms, ARN)
        with self.assertRaises(InvalidInput):
            client.seal(stack.request(clientApiKey=""))
        with self.assertRaises(ClientMismatch):
            client.seal(stack.request(clientId="cmSomeoneElse"))
        self.assertEqual(calls, [])

    def test_kms_unreachable_is_retryable(self):
        kms, calls = offline_kms()
        with self.assertRaises(SealFailed) as caught:
            BackupClient(kms, ARN).seal(stack.request())
        e = caught.exception
        self.assertEqual(e.code, "SEAL_FAILED")
        self.assertTrue(e.retryable, str(e))
        self.assertIn("EndpointConnectionError", str(e))
        self.assertEqual(stack.secrets_in(str(e)), [])
        self.assertEqual(calls, ["GenerateDataKey"])


if __name__ == "__main__":
    unittest.main()
