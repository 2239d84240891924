#!/usr/bin/env python3
"""Checks of template.yaml that cfn-lint cannot make: the properties this function relies on.

Run by scripts/test with the project's venv (cfn-lint's YAML decoder reads the !Ref/!GetAtt tags).
Exits non-zero on the first failed check, naming it.
"""
import pathlib
import re
import sys

from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parent.parent
template, matches = decode(str(ROOT / "template.yaml"))
assert not matches, f"template does not parse: {matches}"
R = template["Resources"]
P = template["Parameters"]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def of_type(t):
    return {k: v for k, v in R.items() if v["Type"] == t}


def ref(name):
    return {"Ref": name}


def getatt(res, attr="Arn"):
    return {"Fn::GetAtt": [res, attr]}


# The function: runtime, architecture, build, configuration from parameters.
functions = of_type("AWS::Serverless::Function")
check(list(functions) == ["BackupFunction"], "exactly one function (one binary serves every trigger)")
fn = functions["BackupFunction"]
fp = fn["Properties"]
check(fp["Runtime"] == "provided.al2023", "runtime provided.al2023")
check(fp["Architectures"] == ["arm64"], "arm64")
check(fp["Handler"] == "bootstrap", "Handler: bootstrap")
check(fn["Metadata"]["BuildMethod"] == "rust-cargolambda", "BuildMethod rust-cargolambda")
check(fn["Metadata"]["BuildProperties"]["Binary"] == "portal-backup", "builds the portal-backup binary")
check(fp["Timeout"] == ref("FunctionTimeout") and fp["MemorySize"] == ref("FunctionMemory"), "timeout and memory are parameters")
env = fp["Environment"]["Variables"]
config_rs = (ROOT / "src/config.rs").read_text()
for var in ["BACKUP_MODE", "KMS_KEY_ID", "BACKUP_TABLE_NAME", "PORTAL_MPC_URL", "PORTAL_API_URL", "MAX_CONCURRENCY",
            "REQUIRE_SEALED_INPUT", "WEBHOOK_SECRET_ARN"]:
    check(var in env, f"environment sets {var}")
    check(f'"{var}"' in config_rs, f"{var} is read by src/config.rs")
check(env["BACKUP_MODE"] == ref("BackupMode"), "BACKUP_MODE from the BackupMode parameter")
check(env["REQUIRE_SEALED_INPUT"] == ref("RequireSealedInput"), "a deployment can refuse unsealed input")
check(sorted(P["BackupMode"]["AllowedValues"]) == ["PORTAL_MANAGED", "SELF_MANAGED"], "BackupMode allowed values")
CURRENT_KEY = {"Fn::If": ["UseStackKey", getatt("BackupKey"), ref("KmsKeyArn")]}
check(env["KMS_KEY_ID"] == CURRENT_KEY and env["BACKUP_TABLE_NAME"] == ref("BackupTable"), "the stack's key (or KmsKeyArn) and table")
check(template["Conditions"]["UseStackKey"] == {"Fn::Equals": [ref("KmsKeyArn"), ""]} and P["KmsKeyArn"]["Default"] == "", "the stack's own key unless KmsKeyArn names another")
check(P["RetiredKmsKeyArns"]["Type"] == "CommaDelimitedList" and P["RetiredKmsKeyArns"]["Default"] == "", "no retired keys by default")
check(env["WEBHOOK_SECRET_ARN"] == ref("WebhookSecret"), "the webhook secret is the stack's own")
secret = R["WebhookSecret"]
check(secret["Type"] == "AWS::SecretsManager::Secret" and "GenerateSecretString" in secret["Properties"], "the webhook secret is generated, never in the template")
for url in ["PortalMpcUrl", "PortalApiUrl"]:
    check(P[url]["AllowedPattern"].startswith("^https://"), f"{url} must be https")

# SQS: SSE, DLQ by redrive, visibility >= 6x the function timeout for every allowed timeout.
queue = R["BackupQueue"]["Properties"]
dlq = R["DeadLetterQueue"]["Properties"]
check(queue.get("SqsManagedSseEnabled") is True and dlq.get("SqsManagedSseEnabled") is True, "both queues encrypted")
check(queue["RedrivePolicy"]["deadLetterTargetArn"] == getatt("DeadLetterQueue"), "redrive to the DLQ")
check(queue["RedrivePolicy"]["maxReceiveCount"] == ref("MaxReceiveCount") and P["MaxReceiveCount"]["Default"] == 5, "maxReceiveCount parameter, default 5")
check(queue["VisibilityTimeout"] == {"Fn::FindInMap": ["Visibility", "Timeout", ref("FunctionTimeout")]}, "visibility from the timeout table")
table = template["Mappings"]["Visibility"]["Timeout"]
for t in P["FunctionTimeout"]["AllowedValues"]:
    check(int(table[str(t)]) >= 6 * int(t), f"visibility >= 6 x timeout for {t}s")

# The event source mapping.
events = fp["Events"]
sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
check(len(sqs) == 1, "one SQS trigger")
sqs = sqs[0]
check(sqs["Queue"] == getatt("BackupQueue"), "the trigger reads the backup queue")
check(sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"], "ReportBatchItemFailures")
check(sqs["BatchSize"] == ref("BatchSize") and sqs["ScalingConfig"]["MaximumConcurrency"] == ref("MaximumConcurrency"), "batch size and maximum concurrency are parameters")

# The HTTP API: backups and the operator routes behind IAM auth (SigV4); Portal's webhooks without
# (Portal cannot sign: the secret header is their auth).
api = [e["Properties"] for e in events.values() if e["Type"] == "HttpApi"]
routes = {(a["Method"], a["Path"]): a["Auth"]["Authorizer"] for a in api}
iam_routes = {
    ("POST", "/backups"),
    ("GET", "/clients/{clientId}/backups"),
    ("POST", "/clients/{clientId}/backups/verify"),
    ("POST", "/clients/{clientId}/backups/restore"),
}
webhook_routes = {("POST", "/webhook/backup"), ("POST", "/webhook/backup/fetch")}
check(set(routes) == iam_routes | webhook_routes, f"exactly the routes the code serves: {sorted(routes)}")
check(all(routes[r] == "AWS_IAM" for r in iam_routes), "backup and operator routes require IAM auth")
check(all(a["ApiId"] == ref("BackupApi") for a in api), "every route is on the stack's HTTP API")
# The webhook routes are custody's (src/workflow/custody.rs); the secret check is the secret type's.
webhook_rs = (ROOT / "src/workflow/custody.rs").read_text() + (ROOT / "src/domain/secret.rs").read_text()
for method, path in sorted(webhook_routes):
    check(routes[(method, path)] == "NONE", f"{path}: no IAM (Portal cannot sign)")
    check(f'"{path}"' in webhook_rs, f"{path} is routed by src/workflow/custody.rs")
check("constant_time" in webhook_rs and "x-webhook-secret" in webhook_rs, "the webhook secret is checked in constant time")
check(R["BackupApi"]["Properties"]["Auth"]["EnableIamAuthorizer"] is True, "IAM authorizer enabled")

# The table: durable, encrypted, retained, with the key schema the code writes.
t = R["BackupTable"]
tp = t["Properties"]
check(t["DeletionPolicy"] == "Retain" and t["UpdateReplacePolicy"] == "Retain", "table retained")
check(tp["BillingMode"] == "PAY_PER_REQUEST", "on-demand")
check(tp["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, "point-in-time recovery")
check(tp["SSESpecification"]["SSEEnabled"] is True and tp["SSESpecification"]["SSEType"] == "KMS", "SSE with KMS")
check(tp["DeletionProtectionEnabled"] is True, "deletion protection")
check([(k["AttributeName"], k["KeyType"]) for k in tp["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")], "pk/sk as in src/adapters/dynamodb")

# The key: rotation, alias, retained.
key = R["BackupKey"]
check(key["Properties"]["EnableKeyRotation"] is True, "key rotation")
check(key["DeletionPolicy"] == "Retain", "key retained (backups are useless without it)")
check(any(a["Properties"]["TargetKeyId"] == ref("BackupKey") for a in of_type("AWS::KMS::Alias").values()), "key alias")

# Least privilege: the policies name exactly the actions the code calls, on the stack's own key and table.
# ReEncrypt needs two actions: ReEncryptFrom on the source key, ReEncryptTo on the destination.
SDK_TO_IAM = {"generate_data_key": ["kms:GenerateDataKey"], "decrypt": ["kms:Decrypt"], "encrypt": ["kms:Encrypt"],
              "re_encrypt": ["kms:ReEncryptFrom", "kms:ReEncryptTo"], "describe_key": ["kms:DescribeKey"],
              "put_item": ["dynamodb:PutItem"], "get_item": ["dynamodb:GetItem"],
              "update_item": ["dynamodb:UpdateItem"], "delete_item": ["dynamodb:DeleteItem"], "query": ["dynamodb:Query"],
              # A transaction is authorized as the writes inside it (the backup's are a Put and an Update).
              "transact_write_items": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
              "batch_get_item": ["dynamodb:BatchGetItem"], "scan": ["dynamodb:Scan"],
              "get_secret_value": ["secretsmanager:GetSecretValue"]}
called = set()
for path in (ROOT / "src").rglob("*.rs"):
    if "/sim/" in str(path):
        continue
    code = path.read_text().split("#[cfg(test)]")[0]
    # `.client.op()`, `.client().op()`, or `client\n .op()` (a client passed as an argument).
    for op in re.findall(r"[.\s(&]client(?:\(\))?\s*\.\s*([a-z_]+)\(\)", code):
        check(op in SDK_TO_IAM, f"SDK call {op} in {path.name} has a known IAM action")
        called.update(SDK_TO_IAM[op])
# A statement under `!If [HasRetiredKeys, statement, AWS::NoValue]` counts as granted (its true branch).
statements, retired = [], []
for p in fp["Policies"]:
    for s in p["Statement"]:
        if "Fn::If" in s:
            cond, then, other = s["Fn::If"]
            check(cond == "HasRetiredKeys" and other == ref("AWS::NoValue"), "the only conditional statement is the retired keys'")
            retired.append(then)
            statements.append(then)
        else:
            statements.append(s)
check(len(retired) == 1, "one statement for retired keys")
retired = retired[0]
check(template["Conditions"]["HasRetiredKeys"] == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", ref("RetiredKmsKeyArns")]}, ""]}]}, "retired keys are granted only when some are listed")
check(retired["Resource"] == ref("RetiredKmsKeyArns"), "retired keys: only the listed ARNs")
check(sorted(retired["Action"]) == ["kms:Decrypt", "kms:ReEncryptFrom"], "retired keys: open and re-wrap from, never seal or re-wrap to")
granted = {a for s in statements for a in s["Action"]}
check(granted == called, f"policies grant exactly the calls the code makes: granted {sorted(granted)}, called {sorted(called)}")
for s in statements:
    check(s["Effect"] == "Allow", "allow statements only")
    check("*" not in str(s["Resource"]), f"{s['Sid']}: no wildcard resource")
    services = {a.split(":")[0] for a in s["Action"]}
    check(len(services) == 1, f"{s['Sid']}: one service per statement")
    own = {"kms": CURRENT_KEY, "dynamodb": getatt("BackupTable"), "secretsmanager": ref("WebhookSecret")}[services.pop()]
    check(s is retired or s["Resource"] == own, f"{s['Sid']}: only the stack's own resource")
    check("kms:ReEncryptFrom" not in s["Action"] or s is retired, f"{s['Sid']}: ReEncryptFrom only on retired keys")
kms = next(s for s in statements if s["Action"][0].startswith("kms:"))
check("kms:ReEncryptTo" in kms["Action"] and kms["Resource"] == CURRENT_KEY, "rotation re-wraps only into the current key")
for s in statements:
    if s["Action"] != ["kms:DescribeKey"] and s["Action"][0].startswith("kms:"):
        check(s["Condition"] == kms["Condition"], f"{s['Sid']}: the same encryption context condition")
envelope_rs = (ROOT / "src/domain/ciphertext.rs").read_text()
context_keys = sorted({k for ctor in ["pub fn backup_share", "pub fn generate_response", "pub fn custodian_share"]
                       for k in re.findall(r'\("(\w+)", ', envelope_rs.split(ctor)[1].split("}")[0])})
check(len(context_keys) == 4, f"every encryption context found in src/domain/ciphertext.rs: {context_keys}")
check(sorted(kms["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == sorted(context_keys),
      f"KMS use conditioned on the encryption context keys the code sends ({context_keys})")
check(kms["Condition"]["Null"]["kms:EncryptionContextKeys"] == "false", "an encryption context is required")

# Operations: DLQ alarm and outputs.
alarms = of_type("AWS::CloudWatch::Alarm")
check(any(a["Properties"]["Dimensions"][0]["Value"] == getatt("DeadLetterQueue", "QueueName") for a in alarms.values()), "an alarm on the DLQ's depth")
for out in ["QueueUrl", "ApiUrl", "TableName", "WebhookBaseUrl"]:
    check(out in template["Outputs"], f"output {out}")

print(f"template.yaml: {checks} checks passed")
