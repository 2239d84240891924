#!/usr/bin/env python3
"""Operator tools for portal-backup's local stack, and an independent decryptor.

  provision --endpoint URL --table T --alias alias/x   create the KMS key, its alias and the table
  decrypt --endpoint URL --context JSON CIPHERTEXT      decrypt one pbe1 ciphertext (prints plaintext)
  show --endpoint URL --table T                         list stored backups and decrypt each one
  enqueue --endpoint URL --queue-url Q EVENT.json…       send the bodies of SQS sample events to a queue
  seal --endpoint URL --key-id K --client-id C < generate.json
                                                        seal a /v1/generate response for the queue
                                                        (prints a pbe1 string for sealedGenerateResponse)

`decrypt` is written from the README's format description alone (boto3 + cryptography), so the
tests use it to prove another language can read what the function writes.
"""
import argparse
import base64
import json
import os
import sys

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def clients(endpoint, region):
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client("kms", **kw), boto3.client("dynamodb", **kw), boto3.client("sqs", **kw)


def provision_queue(sqs, name, visibility=5, max_receive=2):
    """The request queue and its DLQ (short timings, so a local run drains in seconds)."""
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})
    return sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility), "RedrivePolicy": redrive})["QueueUrl"]


def b64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decrypt(kms, ciphertext, context):
    """pbe1.<key id>.<encrypted data key>.<nonce>.<ciphertext||tag>, base64url without padding."""
    parts = ciphertext.split(".")
    if len(parts) != 5 or parts[0] != "pbe1":
        raise ValueError("not a pbe1 ciphertext")
    key_id, edk, nonce, body = parts[1:]
    key_id = b64url(key_id).decode()
    data_key = kms.decrypt(KeyId=key_id, CiphertextBlob=b64url(edk),
                           EncryptionContext=context)["Plaintext"]
    aad = json.dumps(context, sort_keys=True, separators=(",", ":")).encode()
    return AESGCM(data_key).decrypt(b64url(nonce), b64url(body), aad)


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seal(kms, key_id, plaintext, context):
    """The writer side of the format: a fresh AES-256 data key per message, a random 96-bit nonce."""
    out = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    aad = json.dumps(context, sort_keys=True, separators=(",", ":")).encode()
    nonce = os.urandom(12)
    body = AESGCM(out["Plaintext"]).encrypt(nonce, plaintext, aad)
    fields = [out["KeyId"].encode(), out["CiphertextBlob"], nonce, body]
    return "pbe1." + ".".join(b64url_encode(f) for f in fields)


def provision(kms, ddb, sqs, table, alias):
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    if alias in aliases:
        key_id = aliases[alias]
    else:
        key_id = kms.create_key(Description="portal-backup local key")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    if table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}])
    queue = provision_queue(sqs, "portal-backup-requests")
    print(json.dumps({"kmsKeyId": key_id, "kmsAlias": alias, "table": table, "queueUrl": queue}))


def show(kms, ddb, table):
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    for item in sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])):
        row = {k: list(v.values())[0] for k, v in item.items()}
        if row["sk"].startswith("BACKUP#"):
            keep = ["sk", "status", "backupMode", "attempts", "secp256k1PairId", "ed25519PairId"]
            print(json.dumps({"checkpoint": {k: row.get(k) for k in keep}}))
            continue
        ct = row.pop("cipherText")
        if row["sk"].startswith("CUSTODIAN#"):
            # A custodian backup share Portal sent to the webhook (src/webhook.rs).
            context = {"clientId": row["clientId"], "purpose": "custodian-backup-share",
                       "backupSharePairId": row["backupSharePairId"]}
            plain = decrypt(kms, ct, context)
            print(json.dumps({**row, "cipherText": ct[:40] + "…",
                              "decrypted": "<custodian share, %d bytes, redacted>" % len(plain)}))
            continue
        context = {"clientId": row["clientId"], "backupSharePairId": row["backupSharePairId"],
                   "curve": row["curve"]}
        plain = json.loads(decrypt(kms, ct, context))
        shown = {**row, "cipherText": ct[:40] + "…",
                 "decrypted": {"id": plain["id"], "share": "<%d base64 chars, redacted>" % len(plain["share"])},
                 "decryptedIdMatches": plain["id"] == row["backupSharePairId"]}
        print(json.dumps(shown))
    print(f"{len(items)} item(s) in {table}: client and custodian shares, and the backups' checkpoints", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["provision", "decrypt", "show", "seal", "enqueue"])
    p.add_argument("ciphertext", nargs="?")
    p.add_argument("events", nargs="*", help="SQS sample events (enqueue)")
    p.add_argument("--queue-url")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--table", default="portal-backup")
    p.add_argument("--alias", default="alias/portal-backup")
    p.add_argument("--context", help="encryption context as JSON")
    p.add_argument("--key-id", help="KMS key id, ARN or alias (seal)")
    p.add_argument("--client-id", help="Portal client id the sealed generate response belongs to (seal)")
    a = p.parse_intermixed_args()
    kms, ddb, sqs = clients(a.endpoint, a.region)
    if a.command == "provision":
        provision(kms, ddb, sqs, a.table, a.alias)
    elif a.command == "enqueue":
        files = ([a.ciphertext] if a.ciphertext else []) + a.events
        n = 0
        for path in files:
            for record in json.load(open(path))["Records"]:
                sqs.send_message(QueueUrl=a.queue_url, MessageBody=record["body"])
                n += 1
        print(f"sent {n} message(s) to {a.queue_url}", file=sys.stderr)
    elif a.command == "show":
        show(kms, ddb, a.table)
    elif a.command == "seal":
        context = {"clientId": a.client_id, "purpose": "generate-response"}
        print(seal(kms, a.key_id or a.alias, sys.stdin.buffer.read(), context))
    else:
        try:
            sys.stdout.buffer.write(decrypt(kms, a.ciphertext, json.loads(a.context)))
        except Exception as e:  # a clear one-line refusal, for tests of tampering
            print(f"decrypt failed: {type(e).__name__}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
