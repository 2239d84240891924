#!/usr/bin/env python3
"""Operator tools for portal-backup's local stack, and an independent decryptor.

  provision --endpoint URL --table T --alias alias/x   create the KMS key, its alias and the table
  decrypt --endpoint URL --context JSON CIPHERTEXT      open one ciphertext, either format (prints plaintext)
  show --endpoint URL --table T                         list stored backups and decrypt each one
  enqueue --endpoint URL --queue-url Q EVENT.json…       send the bodies of SQS sample events to a queue
  report --endpoint URL --table T --sim URL --answers FILE EVENT.json…
                                                        the local run's summary: each sample's outcome,
                                                        then the stored items, redacted, in a fixed order
  seal --endpoint URL --key-id K --client-id C < payload.json
                                                        seal a /v1/generate response, or
                                                        {"clientApiKey", "generateResponse"}, for the
                                                        queue (prints an AWS Encryption SDK
                                                        message, base64, for
                                                        sealedGenerateResponse; --format pbe1
                                                        writes the old format, for tests)

Every ciphertext the function writes is an AWS Encryption SDK message; `decrypt` opens it with the
Python AWS Encryption SDK (aws-encryption-sdk with the Material Providers Library), not with code
of this project, so the tests prove another implementation reads what the function writes. Older
`pbe1` strings are opened by code written from the README's description of that format alone
(boto3 + cryptography).
"""
import argparse
import base64
import json
import os
import sys

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def clients(endpoint, region):
    """Clients of the local stack (an --endpoint: moto's test credentials), or of AWS (no
    --endpoint: the usual credential chain, as the AWS CLI uses it)."""
    kw = dict(region_name=region)
    if endpoint:
        kw.update(endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test")
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


# The suite every message of the function uses: key commitment, no signature.
ESDK_SUITE = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"


def esdk():
    """The Python AWS Encryption SDK and its Material Providers Library, imported on first use (the
    import takes about a second)."""
    import aws_encryption_sdk
    from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
    from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
    from aws_cryptographic_material_providers.mpl import models
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=aws_encryption_sdk.CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    return client, AwsCryptographicMaterialProviders(config=MaterialProvidersConfig()), models


def esdk_decrypt(kms, message, context):
    """Opens an AWS Encryption SDK message under `context`, required in full: a missing key or a
    different value fails. The MRK-aware discovery keyring opens it with the key its header names,
    a multi-Region key with its replica in this client's region."""
    client, mpl, models = esdk()
    keyring = mpl.create_aws_kms_mrk_discovery_keyring(models.CreateAwsKmsMrkDiscoveryKeyringInput(
        kms_client=kms, region=kms.meta.region_name))
    cmm = mpl.create_required_encryption_context_cmm(models.CreateRequiredEncryptionContextCMMInput(
        underlying_cmm=mpl.create_default_cryptographic_materials_manager(
            models.CreateDefaultCryptographicMaterialsManagerInput(keyring=keyring)),
        required_encryption_context_keys=sorted(context)))
    plaintext, header = client.decrypt(source=message, materials_manager=cmm,
                                       encryption_context=context)
    if header.algorithm.name != ESDK_SUITE:
        raise ValueError(f"message suite is {header.algorithm.name}, not {ESDK_SUITE}")
    if dict(header.encryption_context) != context:
        raise ValueError("the message's stored context is not the context given")
    return plaintext


def esdk_encrypt(kms, key_id, plaintext, context):
    """An AWS Encryption SDK message as the function writes one: the MRK-aware KMS keyring, the
    committing suite without signature, the context stored in the header; standard base64."""
    from aws_encryption_sdk.identifiers import AlgorithmSuite
    client, mpl, models = esdk()
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    keyring = mpl.create_aws_kms_mrk_keyring(models.CreateAwsKmsMrkKeyringInput(
        kms_key_id=arn, kms_client=kms))
    message, _ = client.encrypt(source=plaintext, keyring=keyring, encryption_context=context,
                                algorithm=AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY)
    return base64.b64encode(message).decode()


def text_of(value):
    """A stored ciphertext as text: a binary attribute (an ESDK message) in standard base64."""
    return base64.b64encode(value).decode() if isinstance(value, (bytes, bytearray)) else value


def decrypt(kms, ciphertext, context):
    """Either format: a `pbe1.` string, or an AWS Encryption SDK message in standard base64."""
    if not ciphertext.startswith("pbe1."):
        return esdk_decrypt(kms, base64.b64decode(ciphertext, validate=True), context)
    return pbe1_decrypt(kms, ciphertext, context)


def pbe1_decrypt(kms, ciphertext, context):
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


def seal(kms, key_id, plaintext, context, fmt="aws-esdk"):
    """A ciphertext as the function writes one (an ESDK message), or, for tests of old backups, a
    pbe1 string."""
    if fmt == "aws-esdk":
        return esdk_encrypt(kms, key_id, plaintext, context)
    return pbe1_seal(kms, key_id, plaintext, context)


def pbe1_seal(kms, key_id, plaintext, context):
    """The writer side of pbe1: a fresh AES-256 data key per message, a random 96-bit nonce."""
    out = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    aad = json.dumps(context, sort_keys=True, separators=(",", ":")).encode()
    nonce = os.urandom(12)
    body = AESGCM(out["Plaintext"]).encrypt(nonce, plaintext, aad)
    fields = [out["KeyId"].encode(), out["CiphertextBlob"], nonce, body]
    return "pbe1." + ".".join(b64url_encode(f) for f in fields)


def seal_message(kms, key_id, body):
    """A backup message with its generateResponse and clientApiKey sealed together
    (sealedGenerateResponse opens to {"clientApiKey", "generateResponse"}), as a producer sends it
    to a stack that requires sealed input; anything else is returned as it was."""
    try:
        msg = json.loads(body)
    except ValueError:
        return body
    if not isinstance(msg, dict) or "generateResponse" not in msg or "clientId" not in msg:
        return body
    # The generate response as the message had it (an object or a JSON string; the function takes
    # both inside the sealed payload as it does in the clear).
    payload = {"generateResponse": msg.pop("generateResponse")}
    if "clientApiKey" in msg:
        payload["clientApiKey"] = msg.pop("clientApiKey")
    plain = json.dumps(payload).encode()
    context = {"clientId": msg["clientId"], "purpose": "generate-response"}
    msg["sealedGenerateResponse"] = seal(kms, key_id, plain, context)
    return json.dumps(msg)


def seal_event(kms, key_id, event):
    """A sample event with every backup message in it sealed: an SQS record's body, an API
    Gateway body, or a direct invoke's payload."""
    if "Records" in event:
        for record in event["Records"]:
            record["body"] = seal_message(kms, key_id, record["body"])
        return event
    if "requestContext" in event:
        if isinstance(event.get("body"), str):
            if event.get("isBase64Encoded"):
                body = base64.b64decode(event["body"]).decode()
                event["body"] = base64.b64encode(seal_message(kms, key_id, body).encode()).decode()
            else:
                event["body"] = seal_message(kms, key_id, event["body"])
        return event
    return json.loads(seal_message(kms, key_id, json.dumps(event)))


def provision_key(kms, alias, description):
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    if alias in aliases:
        return aliases[alias]
    key_id = kms.create_key(Description=description)["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key_id


def provision_table(ddb, table):
    if table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}])


def provision(kms, ddb, sqs, table, alias, custody_table, custody_alias, rate_table):
    """The two trust domains, as template.yaml makes them: the backup key and table (client
    shares, checkpoints) and the custody key and table (custodian shares); the queue, and the
    Portal rate limiter's table."""
    key_id = provision_key(kms, alias, "portal-backup local key (client backup shares)")
    custody_key_id = provision_key(kms, custody_alias, "portal-backup local key (custodian shares)")
    provision_table(ddb, table)
    provision_table(ddb, custody_table)
    provision_table(ddb, rate_table)
    queue = provision_queue(sqs, "portal-backup-requests")
    print(json.dumps({"kmsKeyId": key_id, "kmsAlias": alias, "table": table,
                      "custodyKmsKeyId": custody_key_id, "custodyKmsAlias": custody_alias,
                      "custodyTable": custody_table, "rateTable": rate_table, "queueUrl": queue}))


def item_context(row):
    """The encryption context a stored item was sealed under: a custodian share's or a client
    backup share's (src/domain/ciphertext.rs)."""
    if row["sk"].startswith("CUSTODIAN#"):
        return {"clientId": row["clientId"], "purpose": "custodian-backup-share",
                "backupSharePairId": row["backupSharePairId"]}
    return {"clientId": row["clientId"], "backupSharePairId": row["backupSharePairId"],
            "curve": row["curve"]}


# The order every stored item's fields are printed in, whatever order DynamoDB answers.
SHOWN_ORDER = ["pk", "sk", "clientId", "backupSharePairId", "curve", "signingSharePairId",
               "backupMethod", "status", "backupMode", "createdAt", "updatedAt", "cipherText",
               "decrypted", "decryptedIdMatches"]


def ordered(row):
    """`row` with its keys in SHOWN_ORDER, then any others sorted."""
    keys = [k for k in SHOWN_ORDER if k in row] + sorted(k for k in row if k not in SHOWN_ORDER)
    return {k: row[k] for k in keys}


def show(kms, ddb, table):
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    for item in sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])):
        if not item["pk"]["S"].startswith("CLIENT#"):
            continue  # the drills' cursor: no backup
        row = {k: text_of(list(v.values())[0]) for k, v in item.items()}
        if row["sk"].startswith("BACKUP#"):
            keep = ["sk", "status", "backupMode", "attempts", "secp256k1PairId", "ed25519PairId"]
            print(json.dumps({"checkpoint": {k: row.get(k) for k in keep}}))
            continue
        ct = row.pop("cipherText")
        if row["sk"].startswith("CUSTODIAN#"):
            # A custodian backup share Portal sent to the webhook (src/workflow/custody.rs).
            context = item_context(row)
            plain = decrypt(kms, ct, context)
            print(json.dumps(ordered({**row, "cipherText": ct[:40] + "…",
                                      "decrypted": "<custodian share, %d bytes, redacted>" % len(plain)})))
            continue
        context = item_context(row)
        plain = json.loads(decrypt(kms, ct, context))
        shown = {**row, "cipherText": ct[:40] + "…",
                 "decrypted": {"id": plain["id"], "share": "<%d base64 chars, redacted>" % len(plain["share"])},
                 "decryptedIdMatches": plain["id"] == row["backupSharePairId"]}
        print(json.dumps(ordered(shown)))
    print(f"{len(items)} item(s) in {table}: client and custodian shares, and the backups' checkpoints", file=sys.stderr)


def answers_in(path):
    """The JSON values local-invoke printed, one after another (pretty-printed or not)."""
    text, out, at = open(path).read(), [], 0
    decoder = json.JSONDecoder()
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return out
        value, at = decoder.raw_decode(text, at)
        out.append(value)


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def report(kms, ddb, table_name, custody_table, sim, answers_path, events):
    """What a user wants to see of a local run, once, and no secret: each sample's outcome, then
    the stored items (decrypted to check them, printed redacted)."""
    import urllib.request
    state = json.load(urllib.request.urlopen(sim + "/_sim/state"))
    at_portal = {p["id"]: p["status"] for p in state["pairs"]}
    portal_of = lambda ids: ", ".join(sorted({at_portal.get(i, "?") for i in ids})) if ids else "-"
    where = {"SELF_MANAGED": "DynamoDB", "PORTAL_MANAGED": "Portal"}
    rows = []
    # SQS samples: each message's checkpoint says how it ended.
    for path in events:
        name = os.path.basename(path)
        for n, record in enumerate(json.load(open(path))["Records"], 1):
            label = f"{name} #{n}"
            expected_failure = "poison" in name
            try:
                body = json.loads(record["body"])
                client, key = body["clientId"], body.get("idempotencyKey")
            except (ValueError, KeyError, TypeError):
                rows.append([label, "SQS", "failed → DLQ (expected: not a backup request)", "-", "-", "-"])
                continue
            item = ddb.get_item(TableName=table_name, ConsistentRead=True, Key={
                "pk": {"S": f"CLIENT#{client}"}, "sk": {"S": f"BACKUP#{key}"}}).get("Item") if key else None
            if item and item.get("status", {}).get("S") == "COMPLETED":
                ids = [item[k]["S"] for k in ("secp256k1PairId", "ed25519PairId") if k in item]
                mode = item.get("backupMode", {}).get("S", "")
                rows.append([label, "SQS", "completed", " ".join(ids), where.get(mode, mode), portal_of(ids)])
            elif expected_failure:
                missing = [f for f in ("clientApiKey", "generateResponse", "sealedGenerateResponse") if f not in body]
                why = "refused: no clientApiKey" if "clientApiKey" in missing else "refused"
                rows.append([label, "SQS", f"failed → DLQ (expected: {why})", "-", "-", "-"])
            else:
                rows.append([label, "SQS", "NOT COMPLETED (unexpected: see the raw log)", "-", "-", "-"])
    # The other triggers: what the function answered (answers carry no secrets but the
    # webhook fetch's shares, which are counted, never shown).
    for a in answers_in(answers_path):
        if "event" not in a:
            continue
        name = os.path.basename(a["event"])
        value = a.get("response", a.get("error"))
        trigger, outcome, ids, stored = "direct", "", [], "-"
        if isinstance(value, dict) and "statusCode" in value:
            trigger = "API"
            try:
                body = json.loads(value.get("body") or "null")
            except ValueError:
                body = None
            status = value["statusCode"]
            if isinstance(body, dict) and "backupShares" in body:
                outcome = f"{status}: {len(body['backupShares'])} custodian share(s) returned (not shown)"
                trigger = "webhook"
            elif "webhook" in name:
                trigger, outcome = "webhook", f"{status}: custodian share stored" if status == 200 else f"{status}"
            elif isinstance(body, dict) and "error" in body:
                outcome = f"{status}: {body['error'].get('code')}"
            else:
                outcome = f"{status}: {(body or {}).get('status', '')}".strip()
                ids = (body or {}).get("backupSharePairIds", [])
                stored = where.get((body or {}).get("backupMode", ""), "-")
        elif "error" in a:
            outcome = f"error: {value.get('errorType')}"
        elif isinstance(value, dict) and "curves" in value:
            curves = ", ".join(f"{c} {r}" for c, r in sorted(value["curves"].items()))
            outcome = f"verify: {'ok' if value.get('ok') else 'FAILED'} ({curves})"
            ids = value.get("backupSharePairIds", [])
        else:
            outcome = value.get("status", "") if isinstance(value, dict) else ""
            ids = value.get("backupSharePairIds", []) if isinstance(value, dict) else []
            stored = where.get(value.get("backupMode", ""), "-") if isinstance(value, dict) else "-"
        rows.append([name, trigger, outcome, " ".join(ids) or "-", stored, portal_of(ids)])
    print("Samples")
    table(rows, ["event", "trigger", "outcome", "backup share pair ids", "stored in", "at Portal"])
    # The stored items of both tables, each decrypted (to prove it opens), printed redacted.
    for name in (table_name, custody_table):
        stored_items(kms, ddb, name)


def stored_items(kms, ddb, table_name):
    items = [i for i in ddb.scan(TableName=table_name, ConsistentRead=True)["Items"]
             if i["pk"]["S"].startswith("CLIENT#")]  # not the drills' cursor
    out = []
    for item in sorted(items, key=lambda i: (i["sk"]["S"].split("#")[0], i["pk"]["S"], i["sk"]["S"])):
        row = {k: text_of(list(v.values())[0]) for k, v in item.items()}
        kind = row["sk"].split("#")[0]
        if kind == "BACKUP":
            out.append(["checkpoint", row["sk"][7:], row.get("status", ""), row.get("backupMode", ""), "-"])
            continue
        if kind == "TOTALS":  # a client's custodian share count and bytes, for its caps
            out.append(["custodian totals", row["pk"][7:], f'{row.get("shares", "")} share(s)', "",
                        f'{row.get("answerBytes", "")} answer bytes'])
            continue
        ct = row["cipherText"]
        if kind == "CUSTODIAN":
            context = item_context(row)
            plain = decrypt(kms, ct, context)
            out.append(["custodian share", row["backupSharePairId"], row.get("backupMethod", ""), "",
                        f"opens: {len(plain)} bytes (redacted)"])
            continue
        context = item_context(row)
        plain = json.loads(decrypt(kms, ct, context))
        check = "opens, names its pair" if plain.get("id") == row["backupSharePairId"] else "OPENS TO ANOTHER PAIR"
        out.append(["client share", row["backupSharePairId"], row["curve"], "", f"{check} (share redacted)"])
    print()
    print(f"Stored in DynamoDB table {table_name}: {len(items)} item(s), each decrypted by scripts/pbtool.py")
    if out:
        table(out, ["item", "id", "curve / state", "mode", "check"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["provision", "decrypt", "show", "seal", "seal-events", "enqueue", "report"])
    p.add_argument("ciphertext", nargs="?")
    p.add_argument("events", nargs="*", help="SQS sample events (enqueue)")
    p.add_argument("--queue-url")
    p.add_argument("--endpoint", help="the local stack's endpoint (omit it to use AWS itself)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--table", default="portal-backup")
    p.add_argument("--alias", default="alias/portal-backup")
    p.add_argument("--custody-table", default="portal-backup-custody",
                   help="the custody function's table (provision, show, report)")
    p.add_argument("--custody-alias", default="alias/portal-backup-custody")
    p.add_argument("--rate-table", default="portal-backup-portal-rate",
                   help="the Portal rate limiter's table (provision)")
    p.add_argument("--context", help="encryption context as JSON")
    p.add_argument("--sim", help="the Portal simulator's base URL (report)")
    p.add_argument("--answers", help="what local-invoke printed (report)")
    p.add_argument("--key-id", help="KMS key id, ARN or alias (seal)")
    p.add_argument("--client-id", help="Portal client id the sealed generate response belongs to (seal)")
    p.add_argument("--format", choices=["aws-esdk", "pbe1"], default="aws-esdk",
                   help="the ciphertext format seal writes (pbe1: only to test old backups)")
    p.add_argument("--seal", action="store_true",
                   help="seal each message's generateResponse and clientApiKey with --key-id first (enqueue)")
    p.add_argument("--out-dir", help="where seal-events writes the sealed copies")
    a = p.parse_intermixed_args()
    kms, ddb, sqs = clients(a.endpoint, a.region)
    if a.command == "provision":
        provision(kms, ddb, sqs, a.table, a.alias, a.custody_table, a.custody_alias, a.rate_table)
    elif a.command == "enqueue":
        files = ([a.ciphertext] if a.ciphertext else []) + a.events
        n = 0
        for path in files:
            for record in json.load(open(path))["Records"]:
                body = seal_message(kms, a.key_id or a.alias, record["body"]) if a.seal else record["body"]
                sqs.send_message(QueueUrl=a.queue_url, MessageBody=body)
                n += 1
        print(f"sent {n} message(s) to {a.queue_url}", file=sys.stderr)
    elif a.command == "seal-events":
        # Sealed copies of sample events, same file names, for a stack that requires sealed input.
        os.makedirs(a.out_dir, exist_ok=True)
        files = ([a.ciphertext] if a.ciphertext else []) + a.events
        for path in files:
            sealed = seal_event(kms, a.key_id or a.alias, json.load(open(path)))
            with open(os.path.join(a.out_dir, os.path.basename(path)), "w") as f:
                json.dump(sealed, f, indent=2)
            print(os.path.join(a.out_dir, os.path.basename(path)))
    elif a.command == "show":
        show(kms, ddb, a.table)
        show(kms, ddb, a.custody_table)
    elif a.command == "report":
        files = ([a.ciphertext] if a.ciphertext else []) + a.events
        report(kms, ddb, a.table, a.custody_table, a.sim, a.answers, files)
    elif a.command == "seal":
        context = {"clientId": a.client_id, "purpose": "generate-response"}
        print(seal(kms, a.key_id or a.alias, sys.stdin.buffer.read(), context, a.format))
    else:
        try:
            sys.stdout.buffer.write(decrypt(kms, a.ciphertext, json.loads(a.context)))
        except Exception as e:  # a clear one-line refusal, for tests of tampering
            print(f"decrypt failed: {type(e).__name__}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
