#!/usr/bin/env python3
"""The first README command, as a new user runs it: `scripts/run-local` must succeed, show each
sample's outcome and the stored items, label the expected failure, and print no share, key or
secret from any step. Run by scripts/test after the Rust tests (the binaries are built by then).

Secrets looked for in everything the command prints: every API key, signing share and custodian
share of the sample events (and the secrets inside each share's base64 JSON), the local webhook
secret, and every share stored by the run (each item of both tables decrypted here).
"""
import base64
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import pbtool  # noqa: E402

WEBHOOK_SECRET = "local-webhook-secret"  # scripts/stack's


def inner(share_b64):
    """The secret fields inside a share's base64 JSON document."""
    try:
        doc = json.loads(base64.b64decode(share_b64 + "=" * (-len(share_b64) % 4)))
    except (ValueError, TypeError):
        return []
    return [v for k, v in doc.items() if k in ("share", "ssid") and isinstance(v, str)]


def event_secrets():
    out = set()

    def walk(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k in ("clientApiKey", "share") and isinstance(v, str):
                    out.add(v)
                    out.update(inner(v))
                if k == "body" and isinstance(v, str):
                    try:
                        walk(json.loads(v))
                    except ValueError:
                        pass
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for path in glob.glob(os.path.join(ROOT, "events", "*.json")):
        walk(json.load(open(path)))
    return out


def read_env(name):
    env = {}
    for line in open(os.path.join(ROOT, ".stack", name)):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            env[k] = v
    return env


CUSTODY = {}


def stored_secrets(env):
    kms, ddb, _ = pbtool.clients(env["AWS_ENDPOINT_URL"], env["AWS_REGION"])
    out = set()
    items = [i for t in (env["BACKUP_TABLE_NAME"], CUSTODY["CUSTODY_TABLE_NAME"])
             for i in ddb.scan(TableName=t, ConsistentRead=True)["Items"]]
    for item in items:
        # A binary attribute (an ESDK message) as its standard base64 text.
        row = {k: pbtool.text_of(list(v.values())[0]) for k, v in item.items()}
        if "cipherText" not in row or row["sk"].startswith("BACKUP#"):
            continue
        plain = pbtool.decrypt(kms, row["cipherText"], pbtool.item_context(row)).decode()
        if row["sk"].startswith("CUSTODIAN#"):
            out.add(plain)
            try:
                share = json.loads(plain)
                out.update(inner(share) if isinstance(share, str) else [])
            except ValueError:
                pass
            continue
        share = json.loads(plain)["share"]
        out.add(share)
        out.update(inner(share))
    return out


def main():
    run = subprocess.run([os.path.join(ROOT, "scripts", "run-local")], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    output = run.stdout
    failures = []
    if run.returncode != 0:
        failures.append(f"scripts/run-local exited {run.returncode}")
    env = read_env("env")
    CUSTODY.update(read_env("custody.env"))
    # Two trust domains: the backup function's environment names nothing of custody's.
    for var in ("CUSTODY_TABLE_NAME", "CUSTODY_KMS_KEY_ID", "WEBHOOK_SECRET"):
        if var in env:
            failures.append(f".stack/env (the backup function's) sets {var}")
    secrets = {s for s in event_secrets() | stored_secrets(env) | {WEBHOOK_SECRET} if len(s) >= 8}
    if len(secrets) < 10:
        failures.append(f"only {len(secrets)} secrets collected: the scan would prove nothing")
    leaked = [s[:6] + "…" for s in secrets if s in output]
    if leaked:
        failures.append(f"{len(leaked)} secret(s) printed, starting {leaked[:3]}")
    # Every sample but the poison message completes: sealed first, as the stack requires.
    for name in ("http-api.json", "rest-api.json", "direct.json"):
        if not any(line.lstrip().startswith(name) and "COMPLETED" in line for line in output.splitlines()):
            failures.append(f"{name} did not complete")
    if output.count("completed") < 4 or "NOT COMPLETED" in output:
        failures.append("an SQS sample did not complete")
    for want in ("Samples", "completed", "(expected:", "Stored in DynamoDB table", "raw logs",
                 "custodian share(s) returned (not shown)", "verify: ok"):
        if want not in output:
            failures.append(f"the output lacks {want!r}")
    if '"timestamp"' in output or '"_aws"' in output:
        failures.append("raw log lines (JSON logs or EMF) reached the output")
    subprocess.run([os.path.join(ROOT, "scripts", "stack"), "down"], cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if failures:
        print(output)
        print("run-local output test FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"run-local output test passed: {len(output.splitlines())} lines, "
          f"{len(secrets)} secrets looked for, none printed")


if __name__ == "__main__":
    main()
