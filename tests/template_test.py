#!/usr/bin/env python3
"""Checks of template.yaml (and template-secondary.yaml) that cfn-lint cannot make: the
properties this function relies on.

Run by scripts/test with the project's venv (cfn-lint's YAML decoder reads the !Ref/!GetAtt tags).
Exits non-zero on the first failed check, naming it.
"""
import json
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


def unwrap(statements):
    """Statements, with `!If [cond, statement, AWS::NoValue]` as their true branch."""
    out = []
    for st in statements:
        if "Fn::If" in st:
            cond, then, other = st["Fn::If"]
            check(other == ref("AWS::NoValue") or then == ref("AWS::NoValue"), "a conditional statement is present or absent")
            st = other if then == ref("AWS::NoValue") else then
        out.append(st)
    return out
def actions(st):
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


# Two functions, one binary: the backup function and the custody function (FUNCTION_ROLE).
functions = of_type("AWS::Serverless::Function")
check(sorted(functions) == ["BackupFunction", "CustodyFunction"], "two functions: backup and custody")
config_rs = (ROOT / "src/config.rs").read_text()
for name, role in [("BackupFunction", "backup"), ("CustodyFunction", "custody")]:
    f = functions[name]
    fp_ = f["Properties"]
    check(fp_["Runtime"] == "provided.al2023" and fp_["Architectures"] == ["arm64"], f"{name}: provided.al2023 on arm64")
    check(fp_["Handler"] == "bootstrap", f"{name}: Handler bootstrap")
    check(f["Metadata"]["BuildMethod"] == "rust-cargolambda", f"{name}: BuildMethod rust-cargolambda")
    check(f["Metadata"]["BuildProperties"]["Binary"] == "portal-backup", f"{name}: builds the portal-backup binary")
    check(fp_["Environment"]["Variables"]["FUNCTION_ROLE"] == role, f"{name}: FUNCTION_ROLE={role}")
    check(fp_["Role"] == getatt(f"{name}Role"), f"{name}: its own role, {name}Role")
    for var in fp_["Environment"]["Variables"]:
        check(f'"{var}"' in config_rs, f"{name}: {var} is read by src/config.rs")
fn = functions["BackupFunction"]
fp = fn["Properties"]
check(fp["Timeout"] == ref("FunctionTimeout") and fp["MemorySize"] == ref("FunctionMemory"), "timeout and memory are parameters")
env = fp["Environment"]["Variables"]
for var in ["BACKUP_MODE", "KMS_KEY_ID", "BACKUP_TABLE_NAME", "PORTAL_MPC_URL", "PORTAL_API_URL", "MAX_CONCURRENCY",
            "REQUIRE_SEALED_INPUT", "ALLOW_PLAINTEXT_RESTORE"]:
    check(var in env, f"environment sets {var}")
check(env["BACKUP_MODE"] == ref("BackupMode"), "BACKUP_MODE from the BackupMode parameter")
check(env["REQUIRE_SEALED_INPUT"] == ref("RequireSealedInput") and P["RequireSealedInput"]["Default"] == "true",
      "sealed input by default; a deployer may turn it off")
check(env["ALLOW_PLAINTEXT_RESTORE"] == ref("AllowPlaintextRestore") and P["AllowPlaintextRestore"]["Default"] == "false",
      "restores answer sealed unless a deployer allows plaintext")
check(sorted(P["BackupMode"]["AllowedValues"]) == ["PORTAL_MANAGED", "SELF_MANAGED"], "BackupMode allowed values")
CURRENT_KEY = {"Fn::If": ["UseStackKey", getatt("BackupKey"), ref("KmsKeyArn")]}
def table_ref(name, how="Ref"):
    """A table named the one way every reference must: the global table with a second region."""
    one = ref(name) if how == "Ref" else getatt(name, "Arn")
    both = ref(name.replace("Table", "GlobalTable")) if how == "Ref" else getatt(name.replace("Table", "GlobalTable"), "Arn")
    return {"Fn::If": ["HasSecondaryRegion", both, one]}
check(env["KMS_KEY_ID"] == CURRENT_KEY and env["BACKUP_TABLE_NAME"] == table_ref("BackupTable"), "the stack's key (or KmsKeyArn) and table")
check(template["Conditions"]["UseStackKey"] == {"Fn::Equals": [ref("KmsKeyArn"), ""]} and P["KmsKeyArn"]["Default"] == "", "the stack's own key unless KmsKeyArn names another")
check(P["RetiredKmsKeyArns"]["Type"] == "CommaDelimitedList" and P["RetiredKmsKeyArns"]["Default"] == "", "no retired keys by default")
check(env["RETIRED_KMS_KEY_IDS"] == {"Fn::Join": [",", ref("RetiredKmsKeyArns")]},
      "the function is told the retired keys (it opens a message under no other key but KMS_KEY_ID)")
cenv = functions["CustodyFunction"]["Properties"]["Environment"]["Variables"]
check(cenv == {"FUNCTION_ROLE": "custody", "CUSTODY_KMS_KEY_ID": getatt("CustodyKey"), "CUSTODY_TABLE_NAME": table_ref("CustodyTable"),
               "WEBHOOK_SECRET_ARN": ref("WebhookSecret"), "WEBHOOK_SECRET_REFRESH_SECONDS": "300",
               "WEBHOOK_SOURCE_CIDRS": {"Fn::Join": [",", ref("WebhookSourceCidrs")]},
               "MAX_CUSTODIAN_SHARES_PER_CLIENT": ref("MaxCustodianSharesPerClient"),
               "MAX_CUSTODIAN_BYTES_PER_CLIENT": ref("MaxCustodianBytesPerClient")},
      "the custody function is given its own key, table and secret, Portal's addresses and the per-client caps, nothing else")
check("WEBHOOK_SECRET_ARN" not in env, "the backup function has no webhook secret")
check(functions["CustodyFunction"]["Properties"]["ReservedConcurrentExecutions"] == ref("CustodyReservedConcurrency"),
      "the custody function has reserved concurrency")
check(P["MaxCustodianSharesPerClient"]["Default"] == 100 and P["MaxCustodianSharesPerClient"]["MinValue"] == 1
      and P["MaxCustodianSharesPerClient"]["MaxValue"] == 1000, "MaxCustodianSharesPerClient: 100 by default, 1-1000")
# A fetch answers every share of the client in one Lambda response (at most 6 MB).
check(P["MaxCustodianBytesPerClient"]["Default"] == 4194304 and P["MaxCustodianBytesPerClient"]["MaxValue"] <= 5 * 1024 * 1024,
      "MaxCustodianBytesPerClient: 4 MiB by default, at most 5 MiB (the fetch answer fits Lambda's 6 MB response)")

# The webhook secret: its own key, a resource policy, a read rule. Only the custody function (and
# the optional break-glass reader) can read it; the account can write a value, never read one.
secret = R["WebhookSecret"]
sp_ = secret["Properties"]
SECRET_ARN_PATTERN = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}-webhook-secret-??????"
check(secret["Type"] == "AWS::SecretsManager::Secret" and "GenerateSecretString" in sp_ and "SecretString" not in sp_,
      "the webhook secret is generated, never in the template")
check(sp_["Name"] == {"Fn::Sub": "${AWS::StackName}-webhook-secret"} and sp_["KmsKeyId"] == ref("WebhookSecretKey"),
      "the webhook secret has a fixed name and its own key")
check(SECRET_ARN_PATTERN.startswith("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:" + sp_["Name"]["Fn::Sub"] + "-"),
      "the secret's ARN pattern is its name and Secrets Manager's six-character suffix")
for var in ["WEBHOOK_SECRET", "ALLOW_PLAINTEXT_WEBHOOK_SECRET"]:
    check(all(var not in f["Properties"]["Environment"]["Variables"] for f in functions.values()),
          f"no function is given {var} (a plaintext secret is for local runs only; the function refuses it otherwise)")
wkey = R["WebhookSecretKey"]
check(wkey["Type"] == "AWS::KMS::Key" and wkey["DeletionPolicy"] == "Retain" and wkey["UpdateReplacePolicy"] == "Retain"
      and wkey["Properties"]["EnableKeyRotation"] is True, "WebhookSecretKey: retained, rotated")
check(P["WebhookSecretReaderRoleArn"]["Default"] == "" and P["WebhookSecretReaderRoleArn"]["AllowedPattern"] == P["RecoveryRoleArn"]["AllowedPattern"],
      "the break-glass reader is optional, a role ARN")
check(template["Conditions"]["HasWebhookSecretReader"] == {"Fn::Not": [{"Fn::Equals": [ref("WebhookSecretReaderRoleArn"), ""]}]},
      "HasWebhookSecretReader: a reader is named")
VIA_SM = {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
def this_secret_via_sm(cond):
    return (cond.get("StringEquals", {}).get("kms:ViaService") == VIA_SM
            and cond.get("StringLike") == {"kms:EncryptionContext:SecretARN": {"Fn::Sub": SECRET_ARN_PATTERN}})
wdecrypt = {}
for st in R["WebhookSecretKey"]["Properties"]["KeyPolicy"]["Statement"]:
    cond_name = None
    if "Fn::If" in st:
        cond_name, st, _ = st["Fn::If"]
    check(st["Effect"] == "Allow", f"WebhookSecretKey/{st['Sid']}: allow only")
    who = st["Principal"]["AWS"]
    acts = actions(st)
    if st["Sid"] == "AccountAdministersButCannotUse":
        continue
    check(all(a in ("kms:Decrypt", "kms:GenerateDataKey") for a in acts), f"WebhookSecretKey/{st['Sid']}: Decrypt or GenerateDataKey only")
    check(this_secret_via_sm(st["Condition"]), f"WebhookSecretKey/{st['Sid']}: through Secrets Manager, for this secret only")
    if "kms:Decrypt" in acts:
        wdecrypt[st["Sid"]] = (who, cond_name, st["Condition"])
root_gdk = [st for st in R["WebhookSecretKey"]["Properties"]["KeyPolicy"]["Statement"]
            if "Fn::If" not in st and st["Principal"]["AWS"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
            and "kms:GenerateDataKey" in actions(st)]
check(len(root_gdk) == 1 and actions(root_gdk[0]) == ["kms:GenerateDataKey"],
      "the account may GenerateDataKey (create and put a value) through Secrets Manager, nothing else")
check(sorted((str(w), c) for w, c, _ in wdecrypt.values()) == sorted([
          (str(getatt("CustodyFunctionRole")), None), (str(ref("WebhookSecretReaderRoleArn")), "HasWebhookSecretReader"),
          (str({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}), None)]),
      f"Decrypt: the custody role, the optional reader, and the account's key check only: {sorted(wdecrypt)}")
for sid, (who, _, cond) in wdecrypt.items():
    check(who != "*" and who != {"AWS": "*"}, f"WebhookSecretKey/{sid}: no Decrypt for *")
    if who == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}:
        # Secrets Manager's check of the caller's key access when a secret is created with the key:
        # a throwaway data key under SecretVersionId RequestToValidateKeyAccess, which no version
        # can have (a version id is 32-64 characters). It opens no stored value.
        check(cond["StringEquals"].get("kms:EncryptionContext:SecretVersionId") == "RequestToValidateKeyAccess"
              and len("RequestToValidateKeyAccess") < 32,
              "the account's only Decrypt is Secrets Manager's key check, never a secret version")
rpol = [r for r in R.values() if r["Type"] == "AWS::SecretsManager::ResourcePolicy"]
check(len(rpol) == 1 and rpol[0]["Properties"]["SecretId"] == ref("WebhookSecret") and rpol[0]["Properties"]["BlockPublicPolicy"] is True,
      "the webhook secret has a resource policy, public policies blocked")
rstmts = rpol[0]["Properties"]["ResourcePolicy"]["Statement"]
check(len(rstmts) == 1 and rstmts[0]["Effect"] == "Deny" and rstmts[0]["Principal"] == "*"
      and actions(rstmts[0]) == ["secretsmanager:GetSecretValue"], "the resource policy denies GetSecretValue to everyone ...")
check(rstmts[0]["Condition"] == {"StringNotEquals": {"aws:PrincipalArn": {"Fn::If": [
          "HasWebhookSecretReader", [getatt("CustodyFunctionRole"), ref("WebhookSecretReaderRoleArn")], [getatt("CustodyFunctionRole")]]}}},
      "... but the custody role and the optional reader (no empty ARN in the list)")
read_rule = R["WebhookSecretReadRule"]["Properties"]
rp = read_rule["EventPattern"]
check(rp["source"] == ["aws.secretsmanager"] and rp["detail"]["eventSource"] == ["secretsmanager.amazonaws.com"]
      and rp["detail"]["eventName"] == ["GetSecretValue"], "the read rule matches GetSecretValue")
check(read_rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS",
      "the read rule receives read-only management events (GetSecretValue is one)")
ids = rp["detail"]["requestParameters"]["secretId"]
check({"prefix": {"Fn::Sub": SECRET_ARN_PATTERN.rsplit("-", 1)[0]}} in ids and {"prefix": sp_["Name"]} in ids,
      "the read rule matches the secret by ARN or by name")
check(rp["detail"]["$or"] == [
          {"userIdentity": {"sessionContext": {"sessionIssuer": {"arn": [{"anything-but": getatt("CustodyFunctionRole")}]}}}},
          {"userIdentity": {"type": [{"anything-but": "AssumedRole"}]}}],
      "the read rule excludes the custody role's sessions only (IAM users and the root user, with no sessionIssuer, match)")
check(read_rule["Targets"] == {"Fn::If": ["HasAlarmTopic", [{"Id": "alarm-topic", "Arn": ref("AlarmTopicArn")}], ref("AWS::NoValue")]},
      "the read rule's events go to AlarmTopicArn when set")
for url in ["PortalMpcUrl", "PortalApiUrl"]:
    check(P[url]["AllowedPattern"].startswith("^https://"), f"{url} must be https")

# SQS: SSE, DLQ by redrive, visibility >= 6x the function timeout for every allowed timeout.
queue = R["BackupQueue"]["Properties"]
dlq = R["DeadLetterQueue"]["Properties"]
check(queue.get("KmsMasterKeyId") == ref("QueueKey") and dlq.get("KmsMasterKeyId") == ref("QueueKey"),
      "both queues SSE-KMS with the queue key (not SSE-SQS)")
check("SqsManagedSseEnabled" not in queue and "SqsManagedSseEnabled" not in dlq, "no SSE-SQS")
check(queue["RedrivePolicy"]["deadLetterTargetArn"] == getatt("DeadLetterQueue"), "redrive to the DLQ")
check(queue["RedrivePolicy"]["maxReceiveCount"] == ref("MaxReceiveCount") and P["MaxReceiveCount"]["Default"] == 5, "maxReceiveCount parameter, default 5")
check(queue["VisibilityTimeout"] == {"Fn::FindInMap": ["Visibility", "Timeout", ref("FunctionTimeout")]}, "visibility from the timeout table")
table = template["Mappings"]["Visibility"]["Timeout"]
for t in P["FunctionTimeout"]["AllowedValues"]:
    check(int(table[str(t)]) >= 6 * int(t), f"visibility >= 6 x timeout for {t}s")

# The event source mapping.
events = fp["Events"]
custody_events = functions["CustodyFunction"]["Properties"]["Events"]
sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
check(len(sqs) == 1, "one SQS trigger")
sqs = sqs[0]
check(sqs["Queue"] == getatt("BackupQueue"), "the trigger reads the backup queue")
check(sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"], "ReportBatchItemFailures")
check(sqs["BatchSize"] == ref("BatchSize") and sqs["ScalingConfig"]["MaximumConcurrency"] == ref("MaximumConcurrency"), "batch size and maximum concurrency are parameters")

# The HTTP API: backups and the operator routes behind IAM auth (SigV4). Portal's webhooks on a REST
# API of their own, whose resource policy answers Portal's addresses only (Portal cannot sign: the
# secret header is their auth).
api = [e["Properties"] for e in list(events.values()) + list(custody_events.values()) if e["Type"] == "HttpApi"]
routes = {(a["Method"], a["Path"]): a["Auth"]["Authorizer"] for a in api}
check(all(e["Type"] == "Api" for e in custody_events.values()), "the custody function has no queue trigger and no HTTP API route")
check({(e["Properties"]["Method"], e["Properties"]["Path"]) for e in custody_events.values()}
      == {("POST", "/webhook/backup"), ("POST", "/webhook/backup/fetch")}, "the custody function serves exactly the webhooks")
check(all(e["Properties"]["RestApiId"] == ref("WebhookApi") for e in custody_events.values()), "the webhooks are on the webhook REST API")
check(not [e for e in events.values() if e["Type"] == "Api"], "the backup function has no route on the webhook API")
iam_routes = {
    ("POST", "/backups"),
    ("GET", "/clients/{clientId}/backups"),
    ("POST", "/clients/{clientId}/backups/verify"),
    ("POST", "/clients/{clientId}/backups/restore"),
    ("POST", "/clients/{clientId}/backups/recover"),
}
webhook_routes = {("POST", "/webhook/backup"), ("POST", "/webhook/backup/fetch")}
check(set(routes) == iam_routes, f"the HTTP API has exactly the IAM routes the code serves: {sorted(routes)}")
check(not set(routes) & webhook_routes, "no webhook route on the HTTP API (it takes neither a resource policy nor WAF)")
check(all(routes[r] == "AWS_IAM" for r in iam_routes), "backup and operator routes require IAM auth")
check(all(a["ApiId"] == ref("BackupApi") for a in api), "every IAM route is on the stack's HTTP API")
# The webhook routes are custody's (src/workflow/custody.rs); the secret check is the secret type's.
webhook_rs = (ROOT / "src/workflow/custody.rs").read_text() + (ROOT / "src/domain/secret.rs").read_text()
for method, path in sorted(webhook_routes):
    check("Auth" not in custody_events[next(k for k, e in custody_events.items() if e["Properties"]["Path"] == path)]["Properties"],
          f"{path}: no IAM (Portal cannot sign)")
    check(f'"{path}"' in webhook_rs, f"{path} is routed by src/workflow/custody.rs")
check("constant_time" in webhook_rs and "x-webhook-secret" in webhook_rs, "the webhook secret is checked in constant time")
check(R["BackupApi"]["Properties"]["Auth"]["EnableIamAuthorizer"] is True, "IAM authorizer enabled")
check("RouteSettings" not in R["BackupApi"]["Properties"], "the HTTP API has no webhook route settings left")
wapi = R["WebhookApi"]
wp = wapi["Properties"]
check(wapi["Type"] == "AWS::Serverless::Api" and wp["EndpointConfiguration"] == {"Type": "REGIONAL"} and wp["StageName"] == "prod",
      "the webhook API is a regional REST API, stage prod")
check(wp.get("AlwaysDeploy") is True, "the webhook API is redeployed on every deploy (a changed resource policy takes effect)")
# Portal's documented webhook addresses (docs/portal-api.md, from Portal's self-managed backups page).
PORTAL_WEBHOOK_IPS = ["35.203.150.117", "104.155.171.139", "35.185.20.23"]
doc_ips = re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", (ROOT / "docs/portal-api.md").read_text())
check(doc_ips == PORTAL_WEBHOOK_IPS, f"docs/portal-api.md names Portal's webhook addresses: {doc_ips}")
check(P["WebhookSourceCidrs"]["Type"] == "CommaDelimitedList"
      and P["WebhookSourceCidrs"]["Default"].split(",") == [f"{ip}/32" for ip in PORTAL_WEBHOOK_IPS],
      "WebhookSourceCidrs: Portal's three addresses, each a /32, by default")
# The Policy property, as written (SAM would resolve a list parameter in Auth.ResourcePolicy to
# its default string).
check("Auth" not in wp, "the webhook API's resource policy is its Policy property, not Auth.ResourcePolicy")
wstmts = wp["Policy"]["Statement"]
allow = [st for st in wstmts if st["Effect"] == "Allow"]
deny = [st for st in wstmts if st["Effect"] == "Deny"]
check(len(allow) == 1 and len(deny) == 1 and len(wstmts) == 2, "the webhook API's policy: one Allow, one Deny")
for st in wstmts:
    check(actions(st) == ["execute-api:Invoke"] and st["Principal"] == "*" and st["Resource"] == "execute-api:/*",
          f"{st['Sid']}: execute-api:Invoke on the whole API")
check(allow[0]["Condition"] == {"IpAddress": {"aws:SourceIp": ref("WebhookSourceCidrs")}}, "invoke allowed from WebhookSourceCidrs only")
check(deny[0]["Condition"] == {"NotIpAddress": {"aws:SourceIp": ref("WebhookSourceCidrs")}}, "invoke denied from any other address")
ms = wp["MethodSettings"]
check(len(ms) == 1 and ms[0]["ResourcePath"] == "/*" and ms[0]["HttpMethod"] == "*"
      and ms[0]["ThrottlingRateLimit"] == 5 and ms[0]["ThrottlingBurstLimit"] == 10,
      "the webhook stage is throttled at 5 a second, burst 10")
check(ms[0]["ThrottlingRateLimit"] < R["BackupApi"]["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"],
      "the webhooks' throttle is below the IAM routes'")

# The tables: durable, encrypted, retained, with the key schema the code writes.
check(sorted(of_type("AWS::DynamoDB::Table")) == ["BackupTable", "CustodyTable"], "two tables: backup and custody")
check(sorted(of_type("AWS::DynamoDB::GlobalTable")) == ["BackupGlobalTable", "CustodyGlobalTable"], "and the same two as global tables")
for name in ["BackupTable", "CustodyTable", "BackupGlobalTable", "CustodyGlobalTable"]:
    t = R[name]
    tp = t["Properties"]
    check(t["DeletionPolicy"] == "Retain" and t["UpdateReplacePolicy"] == "Retain", f"{name} retained")
    check(tp["BillingMode"] == "PAY_PER_REQUEST", f"{name} on-demand")
    check(tp["SSESpecification"]["SSEEnabled"] is True and tp["SSESpecification"]["SSEType"] == "KMS", f"{name} SSE with KMS")
    check([(k["AttributeName"], k["KeyType"]) for k in tp["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")], f"{name}: pk/sk as in src/adapters/dynamodb")
    if "Global" in name:
        check(t["Condition"] == "HasSecondaryRegion", f"{name} only with a second region")
        regions = [r["Region"] for r in tp["Replicas"]]
        check(regions == [ref("AWS::Region"), ref("SecondaryRegion")], f"{name}: a replica here and in SecondaryRegion")
        for r in tp["Replicas"]:
            check(r["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True and r["DeletionProtectionEnabled"] is True,
                  f"{name}: PITR and deletion protection on every replica")
    else:
        check(t["Condition"] == "OneRegion", f"{name} only in one region")
        check(tp["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, f"{name} point-in-time recovery")
        check(tp["DeletionProtectionEnabled"] is True, f"{name} deletion protection")
check(P["SecondaryRegion"]["Default"] == "", "one region by default")
check(template["Conditions"]["OneRegion"] == {"Fn::Equals": [ref("SecondaryRegion"), ""]}
      and template["Conditions"]["HasSecondaryRegion"] == {"Fn::Not": [{"Fn::Equals": [ref("SecondaryRegion"), ""]}]}, "the region conditions")
for key in ["BackupKey", "CustodyKey"]:
    check(R[key]["Properties"]["MultiRegion"] == {"Fn::If": ["HasSecondaryRegion", True, False]}, f"{key} is a multi-Region key with a second region")

# The keys: rotation, alias, retained.
for name in ["BackupKey", "CustodyKey", "WebhookSecretKey"]:
    key = R[name]
    check(key["Properties"]["EnableKeyRotation"] is True, f"{name} rotation")
    check(key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain", f"{name} retained (what it sealed is useless without it)")
    check(any(a["Properties"]["TargetKeyId"] == ref(name) for a in of_type("AWS::KMS::Alias").values()), f"{name} alias")
check(R["QueueKey"]["Properties"]["EnableKeyRotation"] is True, "QueueKey rotation")

# Keys for named roles: no key policy lets the account root or "*" use a key; the root keeps the
# administrative actions (the key can never be locked out). The one exception is the webhook
# secret's key, which the account may use through Secrets Manager to write a value (checked above:
# GenerateDataKey, and Decrypt only for Secrets Manager's key check). Explicit denies to "*" keep
# purposes apart; they grant nothing.
CRYPTO = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:*", "kms:CreateGrant", "*")
def is_crypto(action):
    return any(action == c or action.startswith(c) for c in CRYPTO) or action in ("kms:Create*", "kms:Generate*", "kms:Re*")
CRYPTO_USE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
PURPOSE = "kms:EncryptionContext:purpose"
ROOT_ARN = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
keys = of_type("AWS::KMS::Key")
check(sorted(keys) == ["BackupKey", "CustodyKey", "QueueKey", "WebhookSecretKey"], "four keys: backup, custody, queue, webhook secret")
key_users = {}  # key -> {principal (as its template expression, str) -> actions}
key_denies = {}  # key -> [Deny statements]
for kname, k in keys.items():
    root_seen = False
    for st in unwrap(k["Properties"]["KeyPolicy"]["Statement"]):
        principal = st["Principal"]["AWS"] if isinstance(st["Principal"], dict) else st["Principal"]
        if st["Effect"] == "Deny":
            check(principal == "*" and sorted(actions(st)) == CRYPTO_USE,
                  f"{kname}/{st['Sid']}: a Deny covers every cryptographic use, for everyone")
            key_denies.setdefault(kname, []).append(st)
            continue
        check(st["Effect"] == "Allow", f"{kname}/{st['Sid']}: allow or deny")
        check(principal != "*", f"{kname}/{st['Sid']}: no wildcard principal")
        if principal == ROOT_ARN:
            if st["Sid"] != "AccountAdministersButCannotUse":
                check(kname == "WebhookSecretKey" and this_secret_via_sm(st["Condition"]),
                      f"{kname}/{st['Sid']}: the account uses no key but the webhook secret's, and that only through Secrets Manager")
                continue
            root_seen = True
            for a in actions(st):
                check(not is_crypto(a), f"{kname}: the account root is not granted cryptographic use ({a})")
            check("kms:PutKeyPolicy" in actions(st) and "kms:ScheduleKeyDeletion" in actions(st), f"{kname}: the root administers the key")
            continue
        uses = [a for a in actions(st) if is_crypto(a)]
        if uses:
            key_users.setdefault(kname, {}).setdefault(str(principal), set()).update(uses)
    check(root_seen, f"{kname}: the account root administers it")
for kname, users in key_users.items():
    for principal, acts in users.items():
        check("kms:*" not in acts, f"{kname}: no kms:* for {principal}")

# Purposes kept apart by value. Client backup share contexts carry no purpose; sealed generate
# responses and restore answers carry generate-response or backup-response; custodian shares
# custodian-backup-share. Every Allow of the backup key (and the backup role's IAM statements on the
# deployer's and retired keys) admits only the backup purposes; an explicit Deny refuses custodian
# ones. The custody key refuses every other purpose, a missing one too.
BACKUP_PURPOSES = ["backup-response", "generate-response"]
def backup_purposes_only(st):
    cond = st.get("Condition", {})
    if_exists = cond.get("StringEqualsIfExists", {}).get(PURPOSE)
    exact = cond.get("StringEquals", {}).get(PURPOSE)
    return (if_exists is not None and sorted(if_exists) == BACKUP_PURPOSES) or exact in BACKUP_PURPOSES
NEVER_CUSTODIAN = {"StringEquals": {PURPOSE: "custodian-backup-share"}}
CUSTODIAN_ONLY = {"StringNotEquals": {PURPOSE: "custodian-backup-share"}}
for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]):
    if st["Effect"] == "Allow" and any(is_crypto(a) for a in actions(st)):
        check(backup_purposes_only(st), f"BackupKey/{st['Sid']}: only the backup purposes (or none)")
check([d["Condition"] for d in key_denies.get("BackupKey", [])] == [NEVER_CUSTODIAN],
      "BackupKey: an explicit Deny of anything under purpose=custodian-backup-share")
check([d["Condition"] for d in key_denies.get("CustodyKey", [])] == [CUSTODIAN_ONLY],
      "CustodyKey: an explicit Deny of anything but purpose=custodian-backup-share (a missing purpose too)")
check(not key_denies.get("QueueKey") and not key_denies.get("WebhookSecretKey"), "no other key carries a purpose Deny")

# The role map: every table and key each function's role can reach (IAM statements, and key
# policy statements naming the role). No table and no key is reachable from both functions.
roles = of_type("AWS::IAM::Role")
check(sorted(roles) == ["BackupFunctionRole", "CustodyFunctionRole", "DrillSchedulerRole"], "one role per function, and the drill schedule's")
# The schedule's role may invoke the backup function and nothing else.
drill_role = roles.pop("DrillSchedulerRole")
check(drill_role.get("Condition") == "HasDrillSchedule", "the schedule's role exists only with a schedule")
drill_statements = [st for pol in drill_role["Properties"]["Policies"] for st in unwrap(pol["PolicyDocument"]["Statement"])]
check(len(drill_statements) == 1 and actions(drill_statements[0]) == ["lambda:InvokeFunction"]
      and drill_statements[0]["Resource"] == getatt("BackupFunction", "Arn"),
      "the drill schedule's role invokes the backup function, nothing else")
check(drill_role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
      and "aws:SourceAccount" in str(drill_role["Properties"]["AssumeRolePolicyDocument"]),
      "only EventBridge Scheduler of this account assumes it")
reach = {}
for rname, role in roles.items():
    r = reach.setdefault(rname, set())
    for pol in role["Properties"]["Policies"]:
        for st in unwrap(pol["PolicyDocument"]["Statement"]):
            res = st["Resource"]
            if isinstance(res, dict) and "Fn::If" in res and res["Fn::If"][0] == "HasSecondaryRegion":
                # A table: the global one with a second region. Both branches must be one table.
                one, both = res["Fn::If"][2], res["Fn::If"][1]
                check(both == table_ref(one["Fn::GetAtt"][0], "Arn")["Fn::If"][1], f"{rname}/{st['Sid']}: the same table in both regions")
                r.add(one["Fn::GetAtt"][0])
            elif isinstance(res, dict) and "Fn::GetAtt" in res:
                r.add(res["Fn::GetAtt"][0])
            elif isinstance(res, dict) and "Ref" in res:
                r.add(res["Ref"])
            elif isinstance(res, dict) and "Fn::Sub" in res and ":sqs:" in res["Fn::Sub"]:
                r.add("BackupQueue" if res["Fn::Sub"].endswith("-backup-requests") else res["Fn::Sub"])
            elif isinstance(res, dict) and "Fn::Sub" in res and ":secretsmanager:" in res["Fn::Sub"]:
                # The webhook secret by its name (a reference would be a dependency circle).
                r.add("WebhookSecret" if res["Fn::Sub"] == SECRET_ARN_PATTERN else res["Fn::Sub"])
            else:
                check(False, f"{rname}/{st['Sid']}: a resource the map knows ({res})")
            check("*" not in str(res), f"{rname}/{st['Sid']}: no wildcard resource")
    for kname, users in key_users.items():
        if str(getatt(rname)) in users:
            r.add(kname)
print(f"  role map: " + "; ".join(f"{r} -> {sorted(v)}" for r, v in sorted(reach.items())))
shared = reach["BackupFunctionRole"] & reach["CustodyFunctionRole"]
check(not shared, f"no table, key or secret reachable from both functions: {sorted(shared)}")
check({"BackupTable", "BackupKey", "QueueKey"} <= reach["BackupFunctionRole"], "the backup role reaches its table and keys")
check(reach["CustodyFunctionRole"] == {"CustodyTable", "CustodyKey", "WebhookSecret", "WebhookSecretKey"},
      "the custody role reaches exactly its table, key, secret and the secret's key")
check("WebhookSecretKey" not in reach["BackupFunctionRole"] and "WebhookSecret" not in reach["BackupFunctionRole"],
      "the backup role reaches neither the webhook secret nor its key")
for kname in ["BackupKey", "CustodyKey"]:
    users = {p for p, a in key_users.get(kname, {}).items() if any(x.startswith("kms:Decrypt") for x in a)}
    for other in {"BackupKey", "CustodyKey"} - {kname}:
        both = users & {p for p, a in key_users.get(other, {}).items() if any(x.startswith("kms:Decrypt") for x in a)}
        check(not both, f"no principal decrypts with both the backup and the custody key: {both}")
recovery = [st for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]) if st.get("Principal", {}).get("AWS") == ref("RecoveryRoleArn")]
check(len(recovery) == 1 and actions(recovery[0]) == ["kms:Decrypt"], "RecoveryRoleArn may Decrypt with the backup key, nothing else")
check(P["RecoveryRoleArn"]["Default"] == "" and P["ProducerRoleArn"]["Default"] == "", "recovery and producer roles are optional")
producer_queue = [st for st in unwrap(R["QueueKey"]["Properties"]["KeyPolicy"]["Statement"]) if st.get("Principal", {}).get("AWS") == ref("ProducerRoleArn")]
check(len(producer_queue) == 1 and "kms:ViaService" in str(producer_queue[0]["Condition"]), "the producer uses the queue key through SQS only")
producer_seal = [st for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]) if st.get("Principal", {}).get("AWS") == ref("ProducerRoleArn")]
check(len(producer_seal) == 1 and actions(producer_seal[0]) == ["kms:GenerateDataKey"]
      and producer_seal[0]["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"] == "generate-response",
      "the producer may only seal generate responses with the backup key")

# An EventBridge rule and an alarm watch the keys' policy, disable and deletion.
rule = R["KeyPolicyChangeRule"]["Properties"]["EventPattern"]
check(sorted(rule["detail"]["eventName"]) == ["DisableKey", "PutKeyPolicy", "ScheduleKeyDeletion"], "the rule watches PutKeyPolicy, DisableKey, ScheduleKeyDeletion")
check(sorted(a["Fn::GetAtt"][0] for a in rule["detail"]["resources"]["ARN"]) == sorted(keys), "the rule watches every key of the stack")
check(any(a["Properties"].get("Dimensions", [{}])[0].get("Value") == ref("KeyPolicyChangeRule") for a in of_type("AWS::CloudWatch::Alarm").values()),
      "an alarm on the key rule")

# Least privilege: the policies name exactly the actions the code calls, on the stack's own key and table.
# ReEncrypt needs two actions: ReEncryptFrom on the source key, ReEncryptTo on the destination.
SDK_TO_IAM = {"generate_data_key": ["kms:GenerateDataKey"], "decrypt": ["kms:Decrypt"], "encrypt": ["kms:Encrypt"],
              "re_encrypt": ["kms:ReEncryptFrom", "kms:ReEncryptTo"], "describe_key": ["kms:DescribeKey"],
              "put_item": ["dynamodb:PutItem"], "get_item": ["dynamodb:GetItem"],
              "update_item": ["dynamodb:UpdateItem"], "delete_item": ["dynamodb:DeleteItem"], "query": ["dynamodb:Query"],
              # A transaction is authorized as the writes inside it (the backup's are a Put and an Update).
              "transact_write_items": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
              "batch_get_item": ["dynamodb:BatchGetItem"], "scan": ["dynamodb:Scan"],
              "get_secret_value": ["secretsmanager:GetSecretValue"],
              # The client's own configuration (its region): no request, no IAM action.
              "config": []}
# A local named `client` that is a client id (a &str), not an SDK client: Rust's own methods are
# no AWS operation.
RUST_METHODS = {"to_owned", "to_string", "clone", "as_str", "as_ref", "len", "is_empty"}
called = set()
for path in (ROOT / "src").rglob("*.rs"):
    if "/sim/" in str(path):
        continue
    code = path.read_text().split("#[cfg(test)]")[0]
    # `.client.op()`, `.client().op()`, or `client\n .op()` (a client passed as an argument).
    for op in re.findall(r"[.\s(&]client(?:\(\))?\s*\.\s*([a-z_]+)\(\)", code):
        if op in RUST_METHODS:
            continue
        check(op in SDK_TO_IAM, f"SDK call {op} in {path.name} has a known IAM action")
        called.update(SDK_TO_IAM[op])
# Granted: each role's IAM statements (conditional ones count, as their true branch) and the key
# policy statements that name a function's role.
statements = []
for rname, role in roles.items():
    for pol in role["Properties"]["Policies"]:
        statements.extend(unwrap(pol["PolicyDocument"]["Statement"]))
for kname, k in keys.items():
    for st in unwrap(k["Properties"]["KeyPolicy"]["Statement"]):
        if st.get("Principal", {}).get("AWS") in [getatt(r) for r in roles]:
            statements.append(st)
retired = [st for st in statements if st.get("Sid") == "RetiredKeysOpenAndReEncryptFromOnly"]
check(len(retired) == 1, "one statement for retired keys")
retired = retired[0]
deployers = [st for st in statements if st.get("Sid") == "DeployersKeySealsAndOpensBackupShares"]
check(len(deployers) == 1 and backup_purposes_only(deployers[0]) and backup_purposes_only(retired),
      "the deployer's key and the retired keys: only the backup purposes (or none)")
check(template["Conditions"]["HasRetiredKeys"] == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", ref("RetiredKmsKeyArns")]}, ""]}]}, "retired keys are granted only when some are listed")
check(retired["Resource"] == ref("RetiredKmsKeyArns"), "retired keys: only the listed ARNs")
check(sorted(retired["Action"]) == ["kms:Decrypt", "kms:ReEncryptFrom"], "retired keys: open and re-wrap from, never seal or re-wrap to")
# SQS polling is the event source mapping's, made with the function's role; not in src/.
called |= {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
granted = {a for st in statements for a in actions(st)}
check(granted == called, f"policies grant exactly the calls the code makes: granted {sorted(granted)}, called {sorted(called)}")
for st in statements:
    check(st["Effect"] == "Allow", "allow statements only")
    services = {a.split(":")[0] for a in actions(st)}
    check(len(services) == 1, f"{st['Sid']}: one service per statement")
    check("kms:ReEncryptFrom" not in actions(st) or st is retired, f"{st['Sid']}: ReEncryptFrom only on retired keys")
kms = next(st for st in statements if st["Sid"] == "BackupFunctionSealsAndOpensBackupShares")
check("kms:ReEncryptTo" in kms["Action"], "rotation re-wraps into the current key")
for st in statements:
    if st is not kms and actions(st)[0].startswith("kms:") and actions(st) != ["kms:DescribeKey"] and "ViaService" not in str(st.get("Condition")) and "Custody" not in st["Sid"]:
        check(st["Condition"] == kms["Condition"], f"{st['Sid']}: the same encryption context condition")
envelope_rs = (ROOT / "src/domain/ciphertext.rs").read_text()
context_keys = sorted({k for ctor in ["pub fn backup_share", "pub fn generate_response", "pub fn custodian_share",
                                     "pub fn backup_response"]
                       for k in re.findall(r'\("(\w+)", ', envelope_rs.split(ctor)[1].split("}")[0])})
check(len(context_keys) == 4, f"every encryption context found in src/domain/ciphertext.rs: {context_keys}")
custody_kms = next(st for st in statements if st["Sid"] == "CustodyFunctionSealsAndOpensCustodianShares")
check(sorted(actions(custody_kms)) == ["kms:Decrypt", "kms:GenerateDataKey"], "the custody function seals and opens, nothing more")
check(custody_kms["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"] == "custodian-backup-share", "the custody key opens custodian shares only")
check(sorted(kms["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == sorted(context_keys),
      f"KMS use conditioned on the encryption context keys the code sends ({context_keys})")
check(kms["Condition"]["Null"]["kms:EncryptionContextKeys"] == "false", "an encryption context is required")

# Operations: DLQ alarm and outputs.
alarms = of_type("AWS::CloudWatch::Alarm")
check(any(a["Properties"]["Dimensions"][0]["Value"] == getatt("DeadLetterQueue", "QueueName") for a in alarms.values()), "an alarm on the DLQ's depth")
restores = [a["Properties"] for a in alarms.values() if a["Properties"]["MetricName"] == "Restores"]
metrics_rs = (ROOT / "src/entry/metrics.rs").read_text()
check(len(restores) == 1 and restores[0]["Namespace"] == "PortalBackup" and '"Restores"' in metrics_rs
      and restores[0]["Threshold"] == 0 and restores[0]["ComparisonOperator"] == "GreaterThanThreshold"
      and restores[0]["Dimensions"] == [{"Name": "Service", "Value": "portal-backup"}],
      "an alarm on every restore and recover (the Restores metric the function emits)")
check(all(a["Properties"]["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [ref("AlarmTopicArn")], ref("AWS::NoValue")]}
          for a in alarms.values()), "every alarm notifies AlarmTopicArn when set")
check(all(a["Properties"].get("AlarmDescription") for a in alarms.values()), "every alarm says what it means and what to do")
# The custody function's EMF metrics (namespace PortalBackup, dimension Service), each alarmed above a
# threshold parameter, the metric named where the code emits it.
src_rs = "".join(f.read_text() for f in (ROOT / "src").rglob("*.rs") if "/sim/" not in str(f))
for alarm, metric, threshold, default in [("WebhookRefusedAlarm", "WebhookRefused", "WebhookRefusedAlarmThreshold", 0),
                                          ("CustodianFetchAlarm", "CustodianSharesFetched", "CustodianFetchAlarmThreshold", 200)]:
    a = alarms[alarm]["Properties"]
    check(a["Namespace"] == "PortalBackup" and a["MetricName"] == metric and a["Statistic"] == "Sum" and a["Period"] == 300
          and a["Dimensions"] == [{"Name": "Service", "Value": "portal-backup"}], f"{alarm}: Sum of {metric} over 5 minutes")
    check(a["Threshold"] == ref(threshold) and a["ComparisonOperator"] == "GreaterThanThreshold"
          and P[threshold]["Default"] == default and a["TreatMissingData"] == "notBreaching",
          f"{alarm}: above {threshold} (default {default})")
    check(f'"{metric}"' in src_rs, f"{alarm}: the function emits {metric} (src/)")
read_alarm = alarms["WebhookSecretReadAlarm"]["Properties"]
check(read_alarm["Namespace"] == "AWS/Events" and read_alarm["MetricName"] == "TriggeredRules"
      and read_alarm["Dimensions"] == [{"Name": "RuleName", "Value": ref("WebhookSecretReadRule")}]
      and read_alarm["Threshold"] == 0 and read_alarm["ComparisonOperator"] == "GreaterThanThreshold",
      "an alarm on any read of the webhook secret by someone else")

# Restore drills: the schedule, its payload, the alarms on failures and on silence.
schedules = of_type("AWS::Scheduler::Schedule")
check(list(schedules) == ["RestoreDrillSchedule"], "one schedule: the restore drill")
sched = schedules["RestoreDrillSchedule"]
check(sched.get("Condition") == "HasDrillSchedule" and P["DrillSchedule"]["Default"] == "rate(1 day)",
      "drills run daily by default, and an empty DrillSchedule turns them off")
check(template["Conditions"]["HasDrillSchedule"] == {"Fn::Not": [{"Fn::Equals": [ref("DrillSchedule"), ""]}]}, "HasDrillSchedule: a schedule is set")
target = sched["Properties"]["Target"]
check(target["Arn"] == getatt("BackupFunction", "Arn") and target["RoleArn"] == getatt("DrillSchedulerRole", "Arn"),
      "the schedule invokes the backup function with its own role")
check(sched["Properties"]["ScheduleExpression"] == ref("DrillSchedule"), "the schedule is the DrillSchedule parameter")
payload = json.loads(target["Input"]["Fn::Sub"].replace("${DrillSample}", "20"))
check(payload == {"action": "drill", "sample": 20}, f"the schedule's payload is a drill of DrillSample backups: {payload}")
check(P["DrillSample"]["Default"] == 20 and P["DrillSample"]["MinValue"] == 1 and P["DrillSample"]["MaxValue"] == 500,
      "DrillSample: 20 by default, within what the function accepts (1-500)")
drill_rs = (ROOT / "src/workflow/drill.rs").read_text()
check("MAX_SAMPLE: u32 = 500" in drill_rs, "the function's largest sample is the template's MaxValue")
failures = [a["Properties"] for a in alarms.values() if a["Properties"]["MetricName"] == "DrillFailures"]
check(len(failures) == 1 and failures[0]["Threshold"] == 1 and failures[0]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
      and failures[0]["Statistic"] == "Sum" and failures[0]["Namespace"] == "PortalBackup"
      and '"DrillFailures"' in metrics_rs, "an alarm on DrillFailures >= 1 (the metric the function emits)")
missing = [a for a in alarms.values() if a["Properties"]["MetricName"] == "DrillsVerified"]
check(len(missing) == 1 and missing[0]["Properties"]["TreatMissingData"] == "breaching" and missing[0].get("Condition") == "HasDrillSchedule",
      "an alarm when no drill reports at all (silence is not success)")
for out in ["QueueUrl", "ApiUrl", "TableName", "WebhookBaseUrl", "CustodyTableName", "CustodyKeyArn", "CustodyFunctionArn",
            "WebhookSecretArn", "WebhookSecretKeyArn"]:
    check(out in template["Outputs"], f"output {out}")
check(template["Outputs"]["WebhookBaseUrl"]["Value"] == {"Fn::Sub": "https://${WebhookApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod/webhook"},
      "WebhookBaseUrl: the webhook REST API's prod stage")

# The second region's template: replica keys of the primary's two keys, retained, usable only
# under the same encryption-context conditions as the primaries.
second, _ = decode(str(ROOT / "template-secondary.yaml"))
SR = second["Resources"]
check(sorted(k for k, v in SR.items() if v["Type"] == "AWS::KMS::ReplicaKey") == ["BackupReplicaKey", "CustodyReplicaKey"],
      "template-secondary.yaml: a replica of each key")
for name, param in [("BackupReplicaKey", "BackupKeyArn"), ("CustodyReplicaKey", "CustodyKeyArn")]:
    rk = SR[name]
    check(rk["Properties"]["PrimaryKeyArn"] == ref(param) and rk["DeletionPolicy"] == "Retain", f"{name}: of {param}, retained")
    check("key/mrk-" in second["Parameters"][param]["AllowedPattern"], f"{param}: a multi-Region key")
    stmts = unwrap(rk["Properties"]["KeyPolicy"]["Statement"])
    for st in stmts:
        acts = actions(st)
        if st["Effect"] == "Deny":
            check(st["Principal"] == {"AWS": "*"} and sorted(acts) == CRYPTO_USE, f"{name}/{st['Sid']}: a Deny of every cryptographic use")
            continue
        if any(a in acts for a in ("kms:Decrypt", "kms:GenerateDataKey")):
            check("kms:EncryptionContextKeys" in str(st.get("Condition")), f"{name}/{st['Sid']}: bound to the encryption context")
        check(st["Sid"] != "AccountAdministersButCannotUse" or not any(a in acts for a in CRYPTO), f"{name}: the account administers, never uses")
        if name == "BackupReplicaKey" and any(is_crypto(a) for a in acts):
            check(backup_purposes_only(st), f"{name}/{st['Sid']}: only the backup purposes (or none), as the primary")
    denies = [st["Condition"] for st in stmts if st["Effect"] == "Deny"]
    check(denies == ([NEVER_CUSTODIAN] if name == "BackupReplicaKey" else [CUSTODIAN_ONLY]),
          f"{name}: the same purpose Deny as its primary")
backup_ctx = next(st for st in unwrap(SR["BackupReplicaKey"]["Properties"]["KeyPolicy"]["Statement"]) if st["Sid"] == "BackupRoleSealsAndOpensBackupShares")
check(sorted(backup_ctx["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == sorted(context_keys),
      "the replica's condition names the keys the code sends, as the primary's does")

# The standby function (DeployStandby=true): the primary's binary over the replicas here, direct
# invoke only, its own drills; its role reaches only the replica table, the replica key's policy
# names the role under the same context condition.
SP = second["Parameters"]
check(SP["DeployStandby"]["Default"] == "false", "no standby function unless asked")
check(second["Rules"]["StandbyNeedsTheTable"]["RuleCondition"] == {"Fn::Equals": [ref("DeployStandby"), "true"]},
      "a standby function needs the table's name (a rule, checked before anything is created)")
standby = SR["StandbyFunction"]
check(standby["Type"] == "AWS::Serverless::Function" and standby["Condition"] == "HasStandby", "the standby function exists only when asked")
sp = standby["Properties"]
senv = sp["Environment"]["Variables"]
check(senv["KMS_KEY_ID"] == getatt("BackupReplicaKey") and senv["BACKUP_TABLE_NAME"] == ref("TableName")
      and senv["FUNCTION_ROLE"] == "backup", "the standby seals and opens with the replica key, over the table's replica")
check(senv["REQUIRE_SEALED_INPUT"] == "true" and senv["ALLOW_PLAINTEXT_RESTORE"] == "false", "the standby keeps the safe defaults")
check(senv["RETIRED_KMS_KEY_IDS"] == "", "the standby opens messages under its replica key only (no retired keys)")
check(all(var not in senv for var in ["WEBHOOK_SECRET", "ALLOW_PLAINTEXT_WEBHOOK_SECRET"]), "the standby has no plaintext webhook secret")
check(set(senv) <= set(env), f"the standby sets only variables the primary's function sets: {sorted(set(senv) - set(env))}")
check("Events" not in sp and standby["Metadata"] == functions["BackupFunction"]["Metadata"] and sp["CodeUri"] == fp["CodeUri"],
      "the standby is the same binary, with no trigger (direct invoke only)")
srole = SR["StandbyFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
check(len(srole) == 1 and all(a.startswith("dynamodb:") for a in actions(srole[0])) and "table/${TableName}" in srole[0]["Resource"]["Fn::Sub"],
      "the standby's role reaches the replica table and nothing else")
standby_kms = [st for st in unwrap(SR["BackupReplicaKey"]["Properties"]["KeyPolicy"]["Statement"]) if st["Sid"] == "StandbyFunctionSealsAndOpensBackupShares"]
check(len(standby_kms) == 1 and standby_kms[0]["Principal"] == {"AWS": getatt("StandbyFunctionRole")}
      and standby_kms[0]["Condition"] == backup_ctx["Condition"], "the replica key lets the standby's role seal and open, under the backup context")
check(not any("Standby" in st.get("Sid", "") for st in unwrap(SR["CustodyReplicaKey"]["Properties"]["KeyPolicy"]["Statement"])),
      "the standby never reaches the custody key")
ssched = SR["RestoreDrillSchedule"]
check(ssched["Condition"] == "HasStandbyDrills" and ssched["Properties"]["Target"]["Arn"] == getatt("StandbyFunction")
      and json.loads(ssched["Properties"]["Target"]["Input"]["Fn::Sub"].replace("${DrillSample}", "20")) == {"action": "drill", "sample": 20},
      "the standby drills on its own schedule, with the drill payload")
salarms = {k: v for k, v in SR.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
check(sorted(a["Properties"]["MetricName"] for a in salarms.values()) == ["DrillFailures", "DrillsVerified"]
      and all("AlarmActions" in a["Properties"] for a in salarms.values()), "the standby's drills alarm on failures and on silence")
check(second["Outputs"]["StandbyFunctionArn"]["Condition"] == "HasStandby", "output StandbyFunctionArn")

# samconfig.toml lists every parameter at the template's default (so a deploy never silently
# turns a safety default off).
import tomllib
sam = tomllib.loads((ROOT / "samconfig.toml").read_text())
overrides = dict(o.split("=", 1) for o in sam["default"]["deploy"]["parameters"]["parameter_overrides"])
check(sorted(overrides) == sorted(P), f"samconfig.toml lists every template parameter: {sorted(set(P) ^ set(overrides))}")
for name, value in overrides.items():
    default = str(P[name].get("Default", ""))
    check(value.strip('"') == default, f"samconfig.toml: {name}={value} is the template's default ({default!r})")

print(f"template.yaml: {checks} checks passed")
