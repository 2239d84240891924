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


# What the template gives ahead of the code that uses it (Portal-managed eject): allowed before
# src/ reads the setting or makes the call. Drop each entry once src/ does (the checks below then
# find it there); the run prints the ones still ahead.
AHEAD_OF_CODE_VARS: set = set()
AHEAD_OF_CODE_CALLS: dict = {}


# Three functions, one binary: the backup function, the operator function and the custody function
# (FUNCTION_ROLE), each with its own role and log group.
functions = of_type("AWS::Serverless::Function")
check(sorted(functions) == ["BackupFunction", "CustodyFunction", "OperatorFunction"], "three functions: backup, operator and custody")
config_rs = (ROOT / "src/config.rs").read_text()
# The tracing layer is set up with the logs, before the configuration is read: its switch is read
# by src/telemetry.rs, not src/config.rs.
telemetry_rs = (ROOT / "src/telemetry.rs").read_text()
TELEMETRY_VARS = {"XRAY_TRACING"}
def read_by_code(var):
    """A function's environment variable is read by src/config.rs (or, for tracing, src/telemetry.rs)."""
    return (f'"{var}"' in config_rs or (var in TELEMETRY_VARS and f'"{var}"' in telemetry_rs)
            or var in AHEAD_OF_CODE_VARS)
FUNCTION_ROLES = {"BackupFunction": "backup", "OperatorFunction": "operator", "CustodyFunction": "custody"}
for name, role in FUNCTION_ROLES.items():
    f = functions[name]
    fp_ = f["Properties"]
    check(fp_["Runtime"] == "provided.al2023" and fp_["Architectures"] == ["arm64"], f"{name}: provided.al2023 on arm64")
    check(fp_["Handler"] == "bootstrap", f"{name}: Handler bootstrap")
    check(f["Metadata"]["BuildMethod"] == "rust-cargolambda", f"{name}: BuildMethod rust-cargolambda")
    check(f["Metadata"]["BuildProperties"]["Binary"] == "portal-backup", f"{name}: builds the portal-backup binary")
    check(fp_["Environment"]["Variables"]["FUNCTION_ROLE"] == role, f"{name}: FUNCTION_ROLE={role}")
    check(f'"{role}"' in config_rs, f"{name}: FUNCTION_ROLE={role} is read by src/config.rs")
    check(fp_["Role"] == getatt(f"{name}Role"), f"{name}: its own role, {name}Role")
    check(fp_["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-" + role}, f"{name}: named <stack name>-{role}")
    logs = R[fp_["LoggingConfig"]["LogGroup"]["Ref"]]
    check(logs["Type"] == "AWS::Logs::LogGroup" and logs["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-" + role}
          and logs["Properties"]["RetentionInDays"] == ref("LogRetentionDays"), f"{name}: a log group of its own, kept LogRetentionDays")
    check(fp_["CodeSigningConfigArn"] == {"Fn::If": ["HasCodeSigning", getatt("CodeSigningConfig", "CodeSigningConfigArn"), ref("AWS::NoValue")]},
          f"{name}: refuses unsigned code when a signing profile is given")
    for var in fp_["Environment"]["Variables"]:
        check(read_by_code(var), f"{name}: {var} is read by src/config.rs (or src/telemetry.rs)")
    # Every metric carries the stack as a dimension (src/entry/metrics.rs), so two stacks in one
    # account never share a metric or an alarm.
    check(fp_["Environment"]["Variables"].get("STACK_NAME") == ref("AWS::StackName"), f"{name}: STACK_NAME is the stack's name")
# Tracing (AWS X-Ray), off by default. The Tracing parameter turns on every function's active
# tracing (Lambda samples invocations, runs the X-Ray daemon and sets AWS_XRAY_DAEMON_ADDRESS) and
# tells the binary to send its subsegments there (XRAY_TRACING=on, read by src/telemetry.rs). Only
# then may each function's role put trace segments: the X-Ray daemon's two actions, on "*" (X-Ray
# takes no resource for them), in a conditional statement of its own. No other statement of the
# stack has a wildcard resource (the role map below).
XRAY_MODE = {"Fn::If": ["TracingOn", "Active", "PassThrough"]}
XRAY_ENV = {"Fn::If": ["TracingOn", "on", "off"]}
XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
def is_xray_grant(st):
    """The X-Ray daemon's statement, exactly: its two actions on "*", nothing else, no condition."""
    return (set(st) == {"Sid", "Effect", "Action", "Resource"} and st["Sid"] == "XRayTraces" and st["Effect"] == "Allow"
            and sorted(actions(st)) == XRAY_ACTIONS and st["Resource"] == "*")
def check_tracing(tmpl, fnames, where):
    res, par = tmpl["Resources"], tmpl["Parameters"]
    check({k: v for k, v in par["Tracing"].items() if k != "Description"} == {"Type": "String", "Default": "Off", "AllowedValues": ["Off", "On"]},
          f"{where}Tracing: Off or On, Off by default")
    check(tmpl["Conditions"]["TracingOn"] == {"Fn::Equals": [ref("Tracing"), "On"]}, f"{where}TracingOn: Tracing=On")
    check(sorted(fnames) == sorted(k for k, v in res.items() if v["Type"] == "AWS::Serverless::Function"), f"{where}every function is traced alike")
    for f in fnames:
        fp_ = res[f]["Properties"]
        check(fp_.get("Tracing") == XRAY_MODE, f"{where}{f}: active tracing with Tracing=On, PassThrough otherwise")
        check(fp_["Environment"]["Variables"].get("XRAY_TRACING") == XRAY_ENV, f"{where}{f}: XRAY_TRACING on with Tracing=On, off otherwise")
        check("AWS_XRAY_DAEMON_ADDRESS" not in fp_["Environment"]["Variables"], f"{where}{f}: the daemon's address is Lambda's to set")
        role = fp_["Role"]["Fn::GetAtt"][0]
        grants = [st for pol in res[role]["Properties"]["Policies"] for st in pol["PolicyDocument"]["Statement"] if "xray:" in json.dumps(st)]
        check(len(grants) == 1 and "Fn::If" in grants[0] and grants[0]["Fn::If"][0] == "TracingOn"
              and grants[0]["Fn::If"][2] == ref("AWS::NoValue") and is_xray_grant(grants[0]["Fn::If"][1]),
              f"{where}{role}: xray:PutTraceSegments and xray:PutTelemetryRecords on *, only with Tracing=On")
    roles_of = sorted(res[f]["Properties"]["Role"]["Fn::GetAtt"][0] for f in fnames)
    check(sorted(k for k, v in res.items() if "xray:" in json.dumps(v)) == roles_of,
          f"{where}no other resource (no other role, no key policy) names an X-Ray action")
check_tracing(template, list(FUNCTION_ROLES), "")
check('std::env::var("XRAY_TRACING")' in telemetry_rs and 'Some("on")' in telemetry_rs
      and 'std::env::var("AWS_XRAY_DAEMON_ADDRESS")' in telemetry_rs,
      "src/telemetry.rs turns tracing on for XRAY_TRACING=on (the template's value), to the daemon at AWS_XRAY_DAEMON_ADDRESS")
log_groups = [v["Properties"]["LogGroupName"]["Fn::Sub"] for v in of_type("AWS::Logs::LogGroup").values()]
check(len(log_groups) == len(set(log_groups)), "no two log groups share a name")
fn = functions["BackupFunction"]
fp = fn["Properties"]
check(fp["Timeout"] == ref("FunctionTimeout") and fp["MemorySize"] == ref("FunctionMemory"), "timeout and memory are parameters")
env = fp["Environment"]["Variables"]
# The stack's Portal rate limiter: its table and the three parameters, the same on both functions
# that call Portal (checked with the table below).
PORTAL_RATE_VARS = {"PORTAL_RATE_TABLE_NAME": ref("PortalRateTable"), "PORTAL_MPC_RATE_PER_MINUTE": ref("PortalMpcRatePerMinute"),
                    "PORTAL_API_RATE_PER_MINUTE": ref("PortalApiRatePerMinute"),
                    "PORTAL_RATE_MAX_WAIT_SECONDS": ref("PortalRateMaxWaitSeconds")}
for var in ["BACKUP_MODE", "KMS_KEY_ID", "BACKUP_TABLE_NAME", "PORTAL_MPC_URL", "PORTAL_API_URL", "MAX_CONCURRENCY",
            "REQUIRE_SEALED_INPUT"]:
    check(var in env, f"environment sets {var}")
check(env["BACKUP_MODE"] == ref("BackupMode"), "BACKUP_MODE from the BackupMode parameter")
check(env["REQUIRE_SEALED_INPUT"] == ref("RequireSealedInput") and P["RequireSealedInput"]["Default"] == "true",
      "sealed input by default; a deployer may turn it off")
check("ALLOW_PLAINTEXT_RESTORE" not in env and "DRILL_SAMPLE" not in env,
      "the backup function is given no restore or drill setting (backups only)")
# Its own queue, to send a message waiting for Portal's budget back to it (a visibility change, or
# on the last receive a delayed copy): the queue it reads, no other.
check(env.get("BACKUP_QUEUE_URL") == ref("BackupQueue") and '"BACKUP_QUEUE_URL"' in config_rs,
      "the backup function is told its own queue (BACKUP_QUEUE_URL), to send a message waiting for Portal's budget back to it")
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
# The operator function: the backup function's key, table, Portal and retired keys, the restore
# setting, the queue to hand a recovered wallet's new shares to, and the one drill it accepts.
op = functions["OperatorFunction"]["Properties"]
oenv = op["Environment"]["Variables"]
check(oenv == {"FUNCTION_ROLE": "operator", "KMS_KEY_ID": env["KMS_KEY_ID"], "BACKUP_TABLE_NAME": env["BACKUP_TABLE_NAME"],
               "BACKUP_MODE": env["BACKUP_MODE"], "PORTAL_MPC_URL": env["PORTAL_MPC_URL"], "PORTAL_API_URL": env["PORTAL_API_URL"],
               "ALLOW_PLAINTEXT_RESTORE": ref("AllowPlaintextRestore"), "RETIRED_KMS_KEY_IDS": env["RETIRED_KMS_KEY_IDS"],
               "BACKUP_QUEUE_URL": ref("BackupQueue"), "DRILL_SAMPLE": ref("DrillSample"),
               "CUSTODIAN_API_KEY_SECRET_ARN": ref("CustodianApiKeySecretArn"), "STACK_NAME": ref("AWS::StackName"),
               "XRAY_TRACING": XRAY_ENV, **{k: env[k] for k in PORTAL_RATE_VARS}},
      f"the operator function is given the backup side's key, table, Portal, Portal budget and retired keys, the restore setting, the queue, the drill sample, the custodian API key's secret, the stack's name and the tracing switch, nothing else: {sorted(oenv)}")
check("OUTCOME_EVENT_BUS" not in oenv and "MAX_RECEIVE_COUNT" not in oenv,
      "the operator function tells no outcome events and reads no queue (the backup function's settings)")
check(P["AllowPlaintextRestore"]["Default"] == "false", "restores answer sealed unless a deployer allows plaintext")
check(op["Timeout"] == ref("FunctionTimeout") and op["MemorySize"] == ref("FunctionMemory"), "the operator function: timeout and memory are parameters")
cenv = functions["CustodyFunction"]["Properties"]["Environment"]["Variables"]
check(cenv == {"FUNCTION_ROLE": "custody", "CUSTODY_KMS_KEY_ID": getatt("CustodyKey"), "CUSTODY_TABLE_NAME": table_ref("CustodyTable"),
               "WEBHOOK_SECRET_ARN": ref("WebhookSecret"), "WEBHOOK_SECRET_REFRESH_SECONDS": "300",
               "WEBHOOK_SOURCE_CIDRS": {"Fn::Join": [",", ref("WebhookSourceCidrs")]},
               "MAX_CUSTODIAN_SHARES_PER_CLIENT": ref("MaxCustodianSharesPerClient"),
               "MAX_CUSTODIAN_BYTES_PER_CLIENT": ref("MaxCustodianBytesPerClient"),
               "PUBLIC_VALUES_TABLE_NAME": table_ref("BackupTable"), "DRILL_SAMPLE": ref("CustodyDrillSample"),
               "STACK_NAME": ref("AWS::StackName"), "XRAY_TRACING": XRAY_ENV},
      "the custody function is given its own key, table and secret, Portal's addresses, the per-client caps, the backup table (for public values), its drill sample, the stack's name and the tracing switch, nothing else")
check(not any(var in cenv for var in ["BACKUP_TABLE_NAME", "KMS_KEY_ID", "RETIRED_KMS_KEY_IDS"]),
      "the custody function is never given the backup side's table or key as such (src/config.rs refuses them)")
check([n for n, f in functions.items() if "CUSTODIAN_API_KEY_SECRET_ARN" in f["Properties"]["Environment"]["Variables"]] == ["OperatorFunction"],
      "only the operator function is told the custodian API key's secret")
check([n for n, f in functions.items() if "PUBLIC_VALUES_TABLE_NAME" in f["Properties"]["Environment"]["Variables"]] == ["CustodyFunction"],
      "only the custody function is given PUBLIC_VALUES_TABLE_NAME")
check("WEBHOOK_SECRET_ARN" not in env and "WEBHOOK_SECRET_ARN" not in oenv, "neither the backup nor the operator function has the webhook secret")
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
ALARM_DESTINATION = {"Fn::If": ["HasAlarmTopic", ref("AlarmTopicArn"), ref("AlarmTopic")]}
check(read_rule["Targets"] == [{"Id": "alarm-topic", "Arn": ALARM_DESTINATION}],
      "the read rule's events go to the alarm destination")
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
# The function tells a transient failure on the last delivery as failed for good: it must know the
# queue's maxReceiveCount, the very same value.
check(env.get("MAX_RECEIVE_COUNT") == queue["RedrivePolicy"]["maxReceiveCount"],
      "the backup function's MAX_RECEIVE_COUNT is the queue's RedrivePolicy maxReceiveCount (one parameter for both)")
check(P["MaxReceiveCount"]["MinValue"] >= 1 and P["MaxReceiveCount"]["MaxValue"] <= 1000 and re.search(r'"MAX_RECEIVE_COUNT",(?: \d+,)? 1, 1000\)', config_rs),
      "MaxReceiveCount stays within what src/config.rs accepts (1-1000)")
check(queue["VisibilityTimeout"] == {"Fn::FindInMap": ["Visibility", "Timeout", ref("FunctionTimeout")]}, "visibility from the timeout table")
table = template["Mappings"]["Visibility"]["Timeout"]
for t in P["FunctionTimeout"]["AllowedValues"]:
    check(int(table[str(t)]) >= 6 * int(t), f"visibility >= 6 x timeout for {t}s")

# The event source mapping.
events = fp["Events"]
oevents = op["Events"]
custody_events = functions["CustodyFunction"]["Properties"]["Events"]
sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
check(len(sqs) == 1, "one SQS trigger")
sqs = sqs[0]
check(sqs["Queue"] == getatt("BackupQueue"), "the trigger reads the backup queue")
check(sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"], "ReportBatchItemFailures")
check(sqs["BatchSize"] == ref("BatchSize") and sqs["ScalingConfig"]["MaximumConcurrency"] == ref("MaximumConcurrency"), "batch size and maximum concurrency are parameters")
check(not [e for e in oevents.values() if e["Type"] == "SQS"] and not [e for e in custody_events.values() if e["Type"] == "SQS"],
      "only the backup function reads the queue")

# The HTTP API: POST /backups (the backup function) and the operator routes (the operator
# function), all behind IAM auth (SigV4). Portal's webhooks on a REST API of their own, whose
# resource policy answers Portal's addresses only (Portal cannot sign: the secret header is their
# auth).
def http_routes(evs):
    return {(e["Properties"]["Method"], e["Properties"]["Path"]): e["Properties"]["Auth"]["Authorizer"]
            for e in evs.values() if e["Type"] == "HttpApi"}
api = [e["Properties"] for e in list(events.values()) + list(oevents.values()) + list(custody_events.values()) if e["Type"] == "HttpApi"]
routes = {(a["Method"], a["Path"]): a["Auth"]["Authorizer"] for a in api}
check(all(e["Type"] == "Api" for e in custody_events.values()), "the custody function has no queue trigger and no HTTP API route")
check({(e["Properties"]["Method"], e["Properties"]["Path"]) for e in custody_events.values()}
      == {("POST", "/webhook/backup"), ("POST", "/webhook/backup/fetch")}, "the custody function serves exactly the webhooks")
check(all(e["Properties"]["RestApiId"] == ref("WebhookApi") for e in custody_events.values()), "the webhooks are on the webhook REST API")
check(not [e for e in list(events.values()) + list(oevents.values()) if e["Type"] == "Api"],
      "neither the backup nor the operator function has a route on the webhook API")
operator_routes = {
    ("GET", "/clients/{clientId}/backups"),
    ("POST", "/clients/{clientId}/backups/verify"),
    ("POST", "/clients/{clientId}/backups/restore"),
    ("POST", "/clients/{clientId}/backups/recover"),
}
iam_routes = {("POST", "/backups")} | operator_routes
webhook_routes = {("POST", "/webhook/backup"), ("POST", "/webhook/backup/fetch")}
check(set(routes) == iam_routes, f"the HTTP API has exactly the IAM routes the code serves: {sorted(routes)}")
check(set(http_routes(events)) == {("POST", "/backups")}, f"the backup function serves POST /backups and no operator route: {sorted(http_routes(events))}")
check(set(http_routes(oevents)) == operator_routes and all(e["Type"] == "HttpApi" for e in oevents.values()),
      "the operator function serves exactly the operator routes, and no other trigger")
check(not set(routes) & webhook_routes, "no webhook route on the HTTP API (it takes neither a resource policy nor WAF)")
check(all(routes[r] == "AWS_IAM" for r in iam_routes), "backup and operator routes require IAM auth")
check(all(a["ApiId"] == ref("BackupApi") for a in api), "every IAM route is on the stack's HTTP API")
operator_rs = (ROOT / "src/entry/operator.rs").read_text()
for _, path in sorted(operator_routes):
    check(f'"{path.rsplit("/", 1)[-1]}"' in operator_rs, f"{path} is routed by src/entry/operator.rs")
# The webhook routes are custody's (src/workflow/custody.rs); the secret check is the secret type's.
webhook_rs = (ROOT / "src/workflow/custody.rs").read_text() + (ROOT / "src/domain/secret.rs").read_text()
for method, path in sorted(webhook_routes):
    check("Auth" not in custody_events[next(k for k, e in custody_events.items() if e["Properties"]["Path"] == path)]["Properties"],
          f"{path}: no IAM (Portal cannot sign)")
    check(f'"{path}"' in webhook_rs, f"{path} is routed by src/workflow/custody.rs")
check("constant_time" in webhook_rs and "x-webhook-secret" in webhook_rs, "the webhook secret is checked in constant time")
check(R["BackupApi"]["Properties"]["Auth"]["EnableIamAuthorizer"] is True, "IAM authorizer enabled")
check("RouteSettings" not in R["BackupApi"]["Properties"], "the HTTP API has no webhook route settings left")
# API Gateway's own access log of the HTTP API: one JSON line per call with the identity it
# authenticated, which neither the function nor a caller can write.
als = R["BackupApi"]["Properties"]["AccessLogSettings"]
check(als["DestinationArn"] == getatt("BackupApiAccessLogs"), "the HTTP API writes access logs to a log group of its own")
alog = R["BackupApiAccessLogs"]["Properties"]
check(alog["LogGroupName"] == {"Fn::Sub": "/aws/apigateway/${AWS::StackName}-api"} and alog["RetentionInDays"] == ref("LogRetentionDays"),
      "the access log group: /aws/apigateway/<stack name>-api, kept LogRetentionDays")
access_format = json.loads(als["Format"])
for field, var in [("requestId", "$context.requestId"), ("sourceIp", "$context.identity.sourceIp"),
                   ("userArn", "$context.identity.userArn"), ("caller", "$context.identity.caller"),
                   ("routeKey", "$context.routeKey"), ("status", "$context.status")]:
    check(access_format.get(field) == var, f"the access log line carries {field} ({var})")
check(all(isinstance(v, str) and v.startswith("$context.") for v in access_format.values()),
      "the access log line is one JSON object of $context variables")
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
check(sorted(of_type("AWS::DynamoDB::Table")) == ["BackupTable", "CustodyTable", "PortalRateTable"],
      "three tables: backup and custody, and the Portal rate limiter's")
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

# The Portal rate limiter's table (src/adapters/dynamodb/rate_limit.rs): one item per Portal API,
# pk PORTAL_RATE#<api>, sk NEXT, rewritten on every Portal call. Its own table, in this region
# only whatever SecondaryRegion says (a global table would replicate every write and conflict
# across regions); it holds only slot times: deleted with the stack, items expire a day after use.
rate_limit_rs = (ROOT / "src/adapters/dynamodb/rate_limit.rs").read_text()
def check_rate_table(tmpl, name, condition, where):
    t = tmpl["Resources"][name]
    tp = t["Properties"]
    check(t["Type"] == "AWS::DynamoDB::Table" and t.get("Condition") == condition, f"{where}{name}: a table of its own (not global)")
    check(t["DeletionPolicy"] == "Delete" and t["UpdateReplacePolicy"] == "Delete", f"{where}{name}: deleted with the stack (it holds only the next slot's time)")
    check(tp["BillingMode"] == "PAY_PER_REQUEST", f"{where}{name}: on-demand")
    check([(k["AttributeName"], k["KeyType"]) for k in tp["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")]
          and tp["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
          f"{where}{name}: string keys pk/sk, as src/adapters/dynamodb/rate_limit.rs writes them")
    check(tp["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}, f"{where}{name}: TTL on expiresAt")
    check(tp["SSESpecification"] == {"SSEEnabled": True}, f"{where}{name}: encrypted with the AWS managed key (it holds no secret)")
    check(not any(k in tp for k in ["StreamSpecification", "Replicas", "TableName"]), f"{where}{name}: no stream, no replica, no fixed name")
    return tp
rate_table = check_rate_table(template, "PortalRateTable", None, "")
rate_code = rate_limit_rs.split("#[cfg(test)]")[0]
check('"PORTAL_RATE#{}"' in rate_code and '"NEXT"' in rate_code and "SET nextAt = " in rate_code
      and "expiresAt = :" in rate_code and f'{rate_table["TimeToLiveSpecification"]["AttributeName"]} = :' in rate_code,
      "src/adapters/dynamodb/rate_limit.rs keeps pk PORTAL_RATE#<api>, sk NEXT, nextAt, and sets expiresAt, the table's TTL attribute")
check(all(R[f]["Properties"]["Environment"]["Variables"].get(k) == v for f in ["BackupFunction", "OperatorFunction"] for k, v in PORTAL_RATE_VARS.items())
      and [n for n, f in functions.items() if "PORTAL_RATE_TABLE_NAME" in f["Properties"]["Environment"]["Variables"]] == ["BackupFunction", "OperatorFunction"],
      "the backup and operator functions (both call Portal) are given the limiter's table and the three parameters; the custody function none")
for var in PORTAL_RATE_VARS:
    check(f'"{var}"' in config_rs, f"{var} is read by src/config.rs")
for param, var, default in [("PortalMpcRatePerMinute", "PORTAL_MPC_RATE_PER_MINUTE", 50), ("PortalApiRatePerMinute", "PORTAL_API_RATE_PER_MINUTE", 200)]:
    check(P[param]["Type"] == "Number" and P[param]["Default"] == default and P[param]["MinValue"] == 0 and "MaxValue" not in P[param]
          and "0: not limited" in P[param]["Description"], f"{param}: {default} calls a minute by default, 0 not limited")
    check(PORTAL_RATE_VARS[var] == ref(param) and re.search(rf'"{var}", {default}\)', config_rs),
          f"{param} is {var}, with src/config.rs's default")
mw = P["PortalRateMaxWaitSeconds"]
check(mw["Type"] == "Number" and mw["Default"] == 20 and mw["MinValue"] == 0 and mw["MaxValue"] == 300
      and re.search(r'"PORTAL_RATE_MAX_WAIT_SECONDS",\s*20,\s*0,\s*300', config_rs),
      "PortalRateMaxWaitSeconds: 20 by default, 0-300, as src/config.rs accepts")
check("BatchSize x MaximumConcurrency" not in P["MaximumConcurrency"]["Description"] and "PortalMpcRatePerMinute" in P["MaximumConcurrency"]["Description"],
      "MaximumConcurrency says the limiter, not the concurrency, holds Portal's rate")

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
# Portal-managed eject: Portal's answer sealed under the backup key with a context of its own
# ({clientId, walletId, purpose=eject-share}), by the operator function, for the recovery role.
EJECT_CONTEXT = {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["clientId", "walletId", "purpose"]},
                 "Null": {"kms:EncryptionContext:clientId": "false", "kms:EncryptionContext:walletId": "false"},
                 "StringEquals": {PURPOSE: "eject-share"}}
eject = {}
for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]):
    if st["Effect"] == "Allow" and any(is_crypto(a) for a in actions(st)):
        if "eject-share" in str(st.get("Condition")):
            check(st["Condition"] == EJECT_CONTEXT, f"BackupKey/{st['Sid']}: eject shares under their own context, exactly")
            eject[st["Sid"]] = (st["Principal"]["AWS"], sorted(actions(st)))
            continue
        check(backup_purposes_only(st), f"BackupKey/{st['Sid']}: only the backup purposes (or none)")
check(eject == {"OperatorFunctionSealsEjectShares": (getatt("OperatorFunctionRole"), ["kms:GenerateDataKey"]),
                "RecoveryRoleOpensEjectShares": (ref("RecoveryRoleArn"), ["kms:Decrypt"])},
      f"eject shares: the operator function seals (and cannot open), the recovery role opens, no one else: {eject}")
backup_seal = next(st for st in R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]
                   if st.get("Sid") == "BackupFunctionSealsAndOpensBackupShares")
check("eject-share" not in str(backup_seal["Condition"]) and "walletId" not in str(backup_seal["Condition"]),
      "the backup function's context condition admits no eject share")
check(not [st for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"])
           if st.get("Principal", {}).get("AWS") == getatt("BackupFunctionRole") and "eject-share" in str(st.get("Condition"))],
      "the backup function may not seal or open an eject share")
check([d["Condition"] for d in key_denies.get("BackupKey", [])] == [NEVER_CUSTODIAN],
      "BackupKey: an explicit Deny of anything under purpose=custodian-backup-share")
check([d["Condition"] for d in key_denies.get("CustodyKey", [])] == [CUSTODIAN_ONLY],
      "CustodyKey: an explicit Deny of anything but purpose=custodian-backup-share (a missing purpose too)")
check(not key_denies.get("QueueKey") and not key_denies.get("WebhookSecretKey"), "no other key carries a purpose Deny")

# The role map: every table and key each function's role can reach (IAM statements, and key
# policy statements naming the role). No table and no key is reachable from both trust domains.
roles = of_type("AWS::IAM::Role")
check(sorted(roles) == ["BackupFunctionRole", "CustodyDrillSchedulerRole", "CustodyFunctionRole", "DrillSchedulerRole", "OperatorFunctionRole", "ProducerRole"],
      "one role per function, each drill schedule's, and the producer role the stack may create")
producer_role = roles.pop("ProducerRole")
for rname, role in roles.items():
    check(role["Properties"].get("ManagedPolicyArns", []) in
          ([], [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}]),
          f"{rname}: no managed policy but Lambda's basic execution (logs)")
# The schedule's role may invoke the operator function and nothing else; only EventBridge Scheduler
# of this account, for this stack's schedule group, assumes it.
drill_role = roles.pop("DrillSchedulerRole")
check(drill_role.get("Condition") == "HasDrillSchedule", "the schedule's role exists only with a schedule")
drill_statements = [st for pol in drill_role["Properties"]["Policies"] for st in unwrap(pol["PolicyDocument"]["Statement"])]
check(len(drill_statements) == 1 and actions(drill_statements[0]) == ["lambda:InvokeFunction"]
      and drill_statements[0]["Resource"] == getatt("OperatorFunction", "Arn"),
      "the drill schedule's role invokes the operator function, nothing else")
trust = drill_role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
DRILL_GROUP_ARN = {"Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule-group/${AWS::StackName}-drills"}
check(len(trust) == 1 and trust[0]["Principal"] == {"Service": "scheduler.amazonaws.com"} and actions(trust[0]) == ["sts:AssumeRole"]
      and trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId"), "aws:SourceArn": DRILL_GROUP_ARN}},
      "only EventBridge Scheduler of this account, for the stack's drill schedule group (aws:SourceArn), assumes it")
# The custody drill schedule's role, likewise: the custody function only, from its own group.
custody_drill_role = roles.pop("CustodyDrillSchedulerRole")
check(custody_drill_role.get("Condition") == "HasCustodyDrillSchedule", "the custody drill schedule's role exists only with a schedule")
cd_statements = [st for pol in custody_drill_role["Properties"]["Policies"] for st in unwrap(pol["PolicyDocument"]["Statement"])]
check(len(cd_statements) == 1 and actions(cd_statements[0]) == ["lambda:InvokeFunction"]
      and cd_statements[0]["Resource"] == getatt("CustodyFunction", "Arn"),
      "the custody drill schedule's role invokes the custody function, nothing else")
cd_trust = custody_drill_role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
CUSTODY_DRILL_GROUP_ARN = {"Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule-group/${AWS::StackName}-custody-drills"}
check(len(cd_trust) == 1 and cd_trust[0]["Principal"] == {"Service": "scheduler.amazonaws.com"} and actions(cd_trust[0]) == ["sts:AssumeRole"]
      and cd_trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId"), "aws:SourceArn": CUSTODY_DRILL_GROUP_ARN}},
      "only EventBridge Scheduler of this account, for the stack's custody drill schedule group, assumes it")
# The custody role's one reach into the backup side: a GetItem of an item's public attributes
# (fine-grained access control), never cipherText; no KMS use of the backup key.
PUBLIC_ATTRIBUTES = ["pk", "sk", "curve", "publicKey", "address"]
PUBLIC_ONLY = {"ForAllValues:StringEquals": {"dynamodb:Attributes": PUBLIC_ATTRIBUTES},
               "StringEqualsIfExists": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}}
custody_backup = [st for pol in roles["CustodyFunctionRole"]["Properties"]["Policies"] for st in unwrap(pol["PolicyDocument"]["Statement"])
                  if "BackupTable" in str(st["Resource"])]
check(len(custody_backup) == 1 and actions(custody_backup[0]) == ["dynamodb:GetItem"]
      and custody_backup[0]["Resource"] == table_ref("BackupTable", "Arn") and custody_backup[0]["Condition"] == PUBLIC_ONLY,
      "the custody role may GetItem the backup table's public attributes only (dynamodb:Attributes, Select SPECIFIC_ATTRIBUTES)")
check("cipherText" not in PUBLIC_ATTRIBUTES and "cipherText" not in str(custody_backup[0]),
      "the custody role can never read a client backup share's cipherText")
check(not [st for pol in roles["CustodyFunctionRole"]["Properties"]["Policies"] for st in unwrap(pol["PolicyDocument"]["Statement"])
           if any(a.startswith("kms:") for a in actions(st))],
      "the custody role's own policy grants no KMS use (its keys' policies name it)")
OUTCOME_BUS_ARN = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${OutcomeEventBusName}"
reach = {}
for rname, role in roles.items():
    r = reach.setdefault(rname, set())
    for pol in role["Properties"]["Policies"]:
        for st in unwrap(pol["PolicyDocument"]["Statement"]):
            if is_xray_grant(st):
                # The X-Ray daemon's two actions (Tracing=On): no resource to reach, "*" the only
                # one X-Ray takes (check_tracing). Every other statement names its resources.
                continue
            res = st["Resource"]
            if isinstance(res, dict) and "Fn::If" in res and res["Fn::If"][0] == "HasSecondaryRegion":
                # A table: the global one with a second region. Both branches must be one table.
                # Its public attributes only (PUBLIC_ONLY) are a node of their own.
                one, both = res["Fn::If"][2], res["Fn::If"][1]
                check(both == table_ref(one["Fn::GetAtt"][0], "Arn")["Fn::If"][1], f"{rname}/{st['Sid']}: the same table in both regions")
                public = st.get("Condition") == PUBLIC_ONLY and actions(st) == ["dynamodb:GetItem"]
                check(public or "Condition" not in st, f"{rname}/{st['Sid']}: a table statement is whole or public attributes only")
                r.add(one["Fn::GetAtt"][0] + (" (public values)" if public else ""))
            elif isinstance(res, dict) and "Fn::GetAtt" in res:
                r.add(res["Fn::GetAtt"][0])
            elif isinstance(res, dict) and "Ref" in res:
                r.add(res["Ref"])
            elif isinstance(res, dict) and "Fn::Sub" in res and ":sqs:" in res["Fn::Sub"]:
                r.add("BackupQueue" if res["Fn::Sub"].endswith(":${AWS::StackName}-backup-requests") else res["Fn::Sub"])
            elif isinstance(res, dict) and "Fn::Sub" in res and ":events:" in res["Fn::Sub"]:
                r.add("OutcomeEventBus" if res["Fn::Sub"] == OUTCOME_BUS_ARN else res["Fn::Sub"])
            elif isinstance(res, dict) and "Fn::Sub" in res and ":secretsmanager:" in res["Fn::Sub"]:
                # The webhook secret by its name (a reference would be a dependency circle).
                r.add("WebhookSecret" if res["Fn::Sub"] == SECRET_ARN_PATTERN else res["Fn::Sub"])
            else:
                check(False, f"{rname}/{st['Sid']}: a resource the map knows ({res})")
            check("*" not in str(res), f"{rname}/{st['Sid']}: no wildcard resource")
    for kname, users in key_users.items():
        if str(getatt(rname)) in users:
            r.add(kname)
check(R["BackupQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "${AWS::StackName}-backup-requests"},
      "the queue the roles name by its name is the backup queue")
print(f"  role map: " + "; ".join(f"{r} -> {sorted(v)}" for r, v in sorted(reach.items())))
for side in ["BackupFunctionRole", "OperatorFunctionRole"]:
    shared = reach[side] & reach["CustodyFunctionRole"]
    check(not shared, f"no table, key or secret reachable from both {side} and the custody function: {sorted(shared)}")
    check("WebhookSecretKey" not in reach[side] and "WebhookSecret" not in reach[side],
          f"{side} reaches neither the webhook secret nor its key")
check({"BackupTable", "BackupKey", "QueueKey", "BackupQueue", "OutcomeEventBus", "PortalRateTable"} <= reach["BackupFunctionRole"],
      "the backup role reaches its table, keys, queue, the outcome event bus and the Portal rate limiter's table")
# The limiter's table: dynamodb:UpdateItem (its one call, a conditional update), for exactly the two
# roles of the functions that call Portal, in a statement of its own; no other statement, role or
# key policy of the stack names it.
rate_grants = [(rname, st) for rname, role in of_type("AWS::IAM::Role").items() for pol in role["Properties"].get("Policies", [])
               for st in unwrap(pol["PolicyDocument"]["Statement"]) if "PortalRateTable" in json.dumps(st)]
check(sorted(r for r, _ in rate_grants) == ["BackupFunctionRole", "OperatorFunctionRole"]
      and all(st == {"Sid": "PortalRateLimiter", "Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": getatt("PortalRateTable")}
              for _, st in rate_grants),
      f"the backup and operator roles, and no other, may dynamodb:UpdateItem the limiter's table, and nothing else on it: {[r for r, _ in rate_grants]}")
check(sum(json.dumps(v).count("PortalRateTable") for v in R.values())
      == len(rate_grants) + sum(json.dumps(f["Properties"]["Environment"]).count("PortalRateTable") for f in functions.values()),
      "the limiter's table is named by those two grants and the two functions' PORTAL_RATE_TABLE_NAME only")
check(all("PortalRateTable" not in json.dumps(k["Properties"]["KeyPolicy"]) for k in keys.values()), "no key policy names the limiter's table")
# The backup role may send to its own queue (a message waiting for Portal's budget, sent again on
# its last receive), beside reading it; the visibility change of a waiting message is the
# ChangeMessageVisibility the event source mapping already uses.
backup_sqs = {st["Sid"]: sorted(actions(st)) for st in unwrap(roles["BackupFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])
              if actions(st)[0].startswith("sqs:")}
check(backup_sqs == {"ReadTheBackupQueue": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
                     "ResendWaitingMessages": ["sqs:SendMessage"]},
      f"the backup role: read its queue, change a message's visibility, and send a waiting message back to it: {backup_sqs}")
check(reach["OperatorFunctionRole"] == reach["BackupFunctionRole"] - {"OutcomeEventBus"} | {"CustodianApiKeySecretArn"},
      f"the operator role reaches the backup side's table, keys and queue, and the custodian API key's secret, nothing more: {sorted(reach['OperatorFunctionRole'])}")
check([r for r, v in reach.items() if "OutcomeEventBus" in v] == ["BackupFunctionRole"], "only the backup role reaches the outcome event bus")
check(reach["CustodyFunctionRole"] == {"CustodyTable", "CustodyKey", "WebhookSecret", "WebhookSecretKey", "BackupTable (public values)"},
      "the custody role reaches exactly its table, key, secret and the secret's key, and the backup table's public values")
check("BackupKey" not in reach["CustodyFunctionRole"] and str(getatt("CustodyFunctionRole")) not in key_users.get("BackupKey", {})
      and "KmsKeyArn" not in reach["CustodyFunctionRole"] and "RetiredKmsKeyArns" not in reach["CustodyFunctionRole"],
      "the custody role has no use of the backup key (nor of a deployer's or retired one): it reads public values, never opens a client half")
check([r for r, v in reach.items() if "CustodianApiKeySecretArn" in v] == ["OperatorFunctionRole"]
      and "CustodianApiKeySecretArn" not in str(custody_drill_role) + str(drill_role),
      "only the operator role may read the custodian API key's secret")
for kname in ["BackupKey", "CustodyKey"]:
    users = {p for p, a in key_users.get(kname, {}).items() if any(x.startswith("kms:Decrypt") for x in a)}
    for other in {"BackupKey", "CustodyKey"} - {kname}:
        both = users & {p for p, a in key_users.get(other, {}).items() if any(x.startswith("kms:Decrypt") for x in a)}
        check(not both, f"no principal decrypts with both the backup and the custody key: {both}")
recovery = [st for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]) if st.get("Principal", {}).get("AWS") == ref("RecoveryRoleArn")]
check(sorted(st["Sid"] for st in recovery) == ["RecoveryRoleOpensBackups", "RecoveryRoleOpensEjectShares"]
      and all(actions(st) == ["kms:Decrypt"] for st in recovery),
      "RecoveryRoleArn may Decrypt with the backup key (backups, and eject shares), nothing else")
check(next(st for st in recovery if st["Sid"] == "RecoveryRoleOpensEjectShares")["Condition"] == EJECT_CONTEXT
      and next(st for st in recovery if st["Sid"] == "RecoveryRoleOpensBackups")["Condition"] == backup_seal["Condition"],
      "the recovery role opens backups under the backup context and eject shares under theirs, each apart")
# The break-glass role for custodian halves: the custody key lets it Decrypt what the custody
# function seals, under the same context; a rule refuses it being the recovery role too.
custody_stmts = R["CustodyKey"]["Properties"]["KeyPolicy"]["Statement"]
custody_recovery = [st for st in custody_stmts if "Fn::If" in st and st["Fn::If"][1].get("Sid") == "CustodyRecoveryRoleOpensCustodianShares"]
check(len(custody_recovery) == 1 and custody_recovery[0]["Fn::If"][0] == "HasCustodyRecoveryRole"
      and custody_recovery[0]["Fn::If"][2] == ref("AWS::NoValue"), "the custody recovery role is in the custody key's policy only when set")
cr = custody_recovery[0]["Fn::If"][1]
custody_fn_stmt = next(st for st in custody_stmts if st.get("Sid") == "CustodyFunctionSealsAndOpensCustodianShares")
check(cr["Effect"] == "Allow" and cr["Principal"] == {"AWS": ref("CustodyRecoveryRoleArn")} and actions(cr) == ["kms:Decrypt"]
      and cr["Condition"] == custody_fn_stmt["Condition"],
      "CustodyRecoveryRoleArn may Decrypt custodian shares, under the custody function's context condition, nothing else")
check(template["Conditions"]["HasCustodyRecoveryRole"] == {"Fn::Not": [{"Fn::Equals": [ref("CustodyRecoveryRoleArn"), ""]}]}
      and P["CustodyRecoveryRoleArn"]["Default"] == "" and P["CustodyRecoveryRoleArn"]["AllowedPattern"] == P["RecoveryRoleArn"]["AllowedPattern"],
      "CustodyRecoveryRoleArn: optional, a role ARN")
check(sum(str(k["Properties"]["KeyPolicy"]).count("CustodyRecoveryRoleArn") for k in keys.values()) == 1,
      "the custody recovery role is named by the custody key only: it opens no client half")
# Portal-managed eject: the operator role reads the custodian API key's secret, that one only, when
# it is named; the stack creates no such secret (it is the operator's).
op_secret = [st for st in R["OperatorFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
             if "Fn::If" in st and st["Fn::If"][1].get("Sid") == "CustodianApiKeySecret"]
check(len(op_secret) == 1 and op_secret[0]["Fn::If"][0] == "HasCustodianApiKeySecret" and op_secret[0]["Fn::If"][2] == ref("AWS::NoValue")
      and op_secret[0]["Fn::If"][1] == {"Sid": "CustodianApiKeySecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                        "Resource": ref("CustodianApiKeySecretArn")},
      "the operator role may GetSecretValue on the custodian API key's secret, exactly that ARN, only when it is set")
check(template["Conditions"]["HasCustodianApiKeySecret"] == {"Fn::Not": [{"Fn::Equals": [ref("CustodianApiKeySecretArn"), ""]}]}
      and P["CustodianApiKeySecretArn"]["Default"] == "", "no Portal-managed eject unless CustodianApiKeySecretArn is set")
SECRET_A = "arn:aws:secretsmanager:us-east-1:123456789012:secret:portal/custodian-api-key-AbC123"
check(re.fullmatch(P["CustodianApiKeySecretArn"]["AllowedPattern"], SECRET_A)
      and not any(re.fullmatch(P["CustodianApiKeySecretArn"]["AllowedPattern"], v)
                  for v in ["*", SECRET_A[:-7], "arn:aws:secretsmanager:us-east-1:123456789012:secret:*"]),
      "CustodianApiKeySecretArn is one secret's full ARN (no wildcard, no partial ARN)")
check(list(of_type("AWS::SecretsManager::Secret")) == ["WebhookSecret"], "the stack creates no secret but the webhook secret")
check(template["Outputs"]["OperatorFunctionRoleArn"]["Value"] == getatt("OperatorFunctionRole"),
      "output OperatorFunctionRoleArn (for the custodian API key secret's resource policy)")
check(P["RecoveryRoleArn"]["Default"] == "" and P["ProducerRoleArn"]["Default"] == "" and P["ProducerPrincipals"]["Default"] == "",
      "the recovery and producer roles are not named by default (a rule requires a producer: ProducerRoleArn or ProducerPrincipals)")
# The producer: the deployer's own role (ProducerRoleArn), or the one the stack creates for
# ProducerPrincipals; the key policies name whichever is in use, the same way.
PRODUCER = {"Fn::If": ["HasProducerRole", ref("ProducerRoleArn"), getatt("ProducerRole")]}
C = template["Conditions"]
check(C["HasProducerRole"] == {"Fn::Not": [{"Fn::Equals": [ref("ProducerRoleArn"), ""]}]}
      and C["HasProducerPrincipals"] == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", ref("ProducerPrincipals")]}, ""]}]}
      and C["CreateProducerRole"] == {"Fn::And": [{"Fn::Not": [{"Condition": "HasProducerRole"}]}, {"Condition": "HasProducerPrincipals"}]}
      and C["HasProducer"] == {"Fn::Or": [{"Condition": "HasProducerRole"}, {"Condition": "CreateProducerRole"}]},
      "the stack creates a producer role exactly when ProducerRoleArn is empty and ProducerPrincipals is not")
queue_key = unwrap(R["QueueKey"]["Properties"]["KeyPolicy"]["Statement"])
VIA_SQS = {"StringEquals": {"kms:ViaService": {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}}}
producer_queue = [st for st in queue_key if st.get("Principal", {}).get("AWS") == PRODUCER]
check(len(producer_queue) == 1 and producer_queue[0]["Condition"] == VIA_SQS, "the producer uses the queue key through SQS only")
producer_seal = [st for st in unwrap(R["BackupKey"]["Properties"]["KeyPolicy"]["Statement"]) if st.get("Principal", {}).get("AWS") == PRODUCER]
GENERATE_RESPONSE = {"StringEquals": {"kms:EncryptionContext:purpose": "generate-response"}}
check(len(producer_seal) == 1 and actions(producer_seal[0]) == ["kms:GenerateDataKey"] and producer_seal[0]["Condition"] == GENERATE_RESPONSE,
      "the producer may only seal generate responses with the backup key")
for kname in ["QueueKey", "BackupKey"]:
    conditional = [st["Fn::If"] for st in R[kname]["Properties"]["KeyPolicy"]["Statement"] if "Fn::If" in st and "Producer" in st["Fn::If"][1].get("Sid", "")]
    check(len(conditional) == 1 and conditional[0][0] == "HasProducer" and conditional[0][2] == ref("AWS::NoValue"),
          f"{kname}: the producer's statement is there whenever there is a producer (named or created), and only then")
check(not any("Producer" in str(k["Properties"]["KeyPolicy"]) for n, k in keys.items() if n not in ("QueueKey", "BackupKey")),
      "no other key names a producer (it opens nothing, custodian shares least of all)")
# The role the stack creates: assumed by ProducerPrincipals, it sends to the backup queue and seals
# generate responses (the key policies above), exactly what a named producer role is given, and
# nothing else.
prp = producer_role["Properties"]
check(producer_role.get("Condition") == "CreateProducerRole" and not prp.get("ManagedPolicyArns") and "RoleName" not in prp,
      "ProducerRole: only when the stack creates it; no managed policy, no fixed name")
ptrust = prp["AssumeRolePolicyDocument"]["Statement"]
check(len(ptrust) == 1 and ptrust[0]["Effect"] == "Allow" and ptrust[0]["Principal"] == {"AWS": ref("ProducerPrincipals")}
      and actions(ptrust[0]) == ["sts:AssumeRole"] and "Condition" not in ptrust[0],
      "ProducerRole is assumed by ProducerPrincipals, and by no one else")
QUEUE_BY_NAME = {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-backup-requests"}
pstatements = [st for pol in prp["Policies"] for st in pol["PolicyDocument"]["Statement"]]
check(pstatements == [
          {"Sid": "SendToTheBackupQueue", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE_BY_NAME},
          {"Fn::If": ["UseStackKey", ref("AWS::NoValue"),
                      {"Sid": "DeployersKeySealsGenerateResponsesOnly", "Effect": "Allow", "Action": "kms:GenerateDataKey",
                       "Resource": ref("KmsKeyArn"), "Condition": GENERATE_RESPONSE}]}],
      "ProducerRole's own policy: sqs:SendMessage on the backup queue, and (under a deployer's key) GenerateDataKey for generate responses only")
producer_grants = sorted((kname, sorted(actions(st)), json.dumps(st.get("Condition"), sort_keys=True))
                         for kname, k in keys.items() for st in unwrap(k["Properties"]["KeyPolicy"]["Statement"])
                         if "Producer" in json.dumps(st.get("Principal")))
check(producer_grants == [("BackupKey", ["kms:GenerateDataKey"], json.dumps(GENERATE_RESPONSE, sort_keys=True)),
                          ("QueueKey", ["kms:Decrypt", "kms:GenerateDataKey"], json.dumps(VIA_SQS, sort_keys=True))],
      f"the key policies give the producer (named or created) GenerateDataKey with the backup key for generate responses, and the queue key through SQS, nothing more: {producer_grants}")
check(QUEUE_BY_NAME["Fn::Sub"].endswith(":${AWS::AccountId}:" + R["BackupQueue"]["Properties"]["QueueName"]["Fn::Sub"]),
      "the queue ProducerRole names by its name is the backup queue")
pout = template["Outputs"]["ProducerRoleArn"]
check(pout.get("Condition") == "HasProducer" and pout["Value"] == PRODUCER, "output ProducerRoleArn: the producer role in use")
PRINCIPAL_OK = ["arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:role/producer", "arn:aws-us-gov:iam::123456789012:role/path/p", ""]
PRINCIPAL_BAD = ["*", "123456789012", "arn:aws:iam::123456789012:user/u", "arn:aws:iam::*:root"]
check(P["ProducerPrincipals"]["Type"] == "CommaDelimitedList"
      and all(re.fullmatch(P["ProducerPrincipals"]["AllowedPattern"], v) for v in PRINCIPAL_OK)
      and not any(re.fullmatch(P["ProducerPrincipals"]["AllowedPattern"], v) for v in PRINCIPAL_BAD),
      "ProducerPrincipals: role or account-root ARNs (CloudFormation checks each one), never * or a bare account id")
# The queue key: who may read what sits in the queues (and the DLQ), and who may send.
queue_users = {st["Sid"]: (st["Principal"]["AWS"], sorted(actions(st)), st.get("Condition")) for st in queue_key
               if st["Sid"] != "AccountAdministersButCannotUse"}
check(queue_users == {
          # SSE-KMS under the stack's own queue key: sending back a waiting message needs GenerateDataKey.
          "BackupFunctionReadsAndResendsToTheQueue": (getatt("BackupFunctionRole"), ["kms:Decrypt", "kms:GenerateDataKey"], VIA_SQS),
          "ProducerSendsToTheQueue": (PRODUCER, ["kms:Decrypt", "kms:GenerateDataKey"], VIA_SQS),
          "OperatorFunctionSendsToTheQueue": (getatt("OperatorFunctionRole"), ["kms:Decrypt", "kms:GenerateDataKey"], VIA_SQS),
          "RedriveRoleMovesMessages": (ref("RedriveRoleArn"), ["kms:Decrypt", "kms:GenerateDataKey"], VIA_SQS)},
      f"the queue key: the backup function reads (and sends back a waiting message), the producer and the operator function send, the redrive role moves, all through SQS only: {sorted(queue_users)}")
redrive = [st for st in R["QueueKey"]["Properties"]["KeyPolicy"]["Statement"] if "Fn::If" in st and st["Fn::If"][1].get("Sid") == "RedriveRoleMovesMessages"]
check(len(redrive) == 1 and redrive[0]["Fn::If"][0] == "HasRedriveRole" and redrive[0]["Fn::If"][2] == ref("AWS::NoValue"),
      "the redrive role is in the queue key's policy only when RedriveRoleArn is set")
check(template["Conditions"]["HasRedriveRole"] == {"Fn::Not": [{"Fn::Equals": [ref("RedriveRoleArn"), ""]}]}
      and P["RedriveRoleArn"]["Default"] == "" and P["RedriveRoleArn"]["AllowedPattern"] == P["RecoveryRoleArn"]["AllowedPattern"],
      "RedriveRoleArn: optional, a role ARN")
check(sum(str(k["Properties"]["KeyPolicy"]).count("RedriveRoleArn") for k in keys.values()) == 1,
      "the redrive role is named by the queue key only: it opens no backup and no custodian share")

# EventBridge rules and alarms watch the keys (policy, disable, deletion, grants), and the functions
# and their roles.
rule = R["KeyPolicyChangeRule"]["Properties"]["EventPattern"]
check(rule["source"] == ["aws.kms"] and rule["detail"]["eventSource"] == ["kms.amazonaws.com"], "the key rule matches KMS CloudTrail events")
check(sorted(rule["detail"]["eventName"]) == ["CreateGrant", "DisableKey", "PutKeyPolicy", "ScheduleKeyDeletion"],
      "the key rule watches PutKeyPolicy, DisableKey, ScheduleKeyDeletion and CreateGrant")
check(sorted(a["Fn::GetAtt"][0] for a in rule["detail"]["resources"]["ARN"]) == sorted(keys), "the key rule watches every key of the stack")
check(any(a["Properties"].get("Dimensions", [{}])[0].get("Value") == ref("KeyPolicyChangeRule") for a in of_type("AWS::CloudWatch::Alarm").values()),
      "an alarm on the key rule")
LAMBDA_CHANGES = ["AddPermission20150331v2", "DeleteFunction20150331", "RemovePermission20150331v2",
                  "UpdateFunctionCode20150331v2", "UpdateFunctionConfiguration20150331v2"]
IAM_CHANGES = ["AttachRolePolicy", "DeleteRolePolicy", "DetachRolePolicy", "PutRolePolicy", "UpdateAssumeRolePolicy"]
def function_names(names):
    """A function as a caller may name it: its name, its ARN or partial ARN, with or without a qualifier."""
    out = []
    for n in names:
        out += [{"Fn::Sub": n}, {"wildcard": {"Fn::Sub": "*:function:" + n}}, {"wildcard": {"Fn::Sub": "*:function:" + n + ":*"}}]
    return sorted(out, key=json.dumps)
def check_change_rule(tmpl, name, fnames, role_names, where):
    res = tmpl["Resources"]
    r = res[name]["Properties"]
    check(r["State"] == "ENABLED", f"{where}{name}: write events only (no read-only events needed)")
    pattern = r["EventPattern"]
    check(pattern["detail-type"] == ["AWS API Call via CloudTrail"] and set(pattern) == {"detail-type", "$or"},
          f"{where}{name}: CloudTrail API calls, one branch per kind of change")
    branches = pattern["$or"]
    check(len(branches) == 3, f"{where}{name}: three branches (function changes, a role handed to a new function, role policies)")
    changes, create, iam = branches
    check(changes["source"] == ["aws.lambda"] and changes["detail"]["eventSource"] == ["lambda.amazonaws.com"]
          and sorted(changes["detail"]["eventName"]) == LAMBDA_CHANGES,
          f"{where}{name}: code, configuration, resource policy and deletion of a function")
    names = [res[f]["Properties"]["FunctionName"]["Fn::Sub"] for f in fnames]
    check(sorted(changes["detail"]["requestParameters"]["functionName"], key=json.dumps) == function_names(names),
          f"{where}{name}: every function of the stack, by name or (partial) ARN: {names}")
    check(create["source"] == ["aws.lambda"] and create["detail"]["eventName"] == ["CreateFunction20150331"]
          and sorted(map(json.dumps, create["detail"]["requestParameters"]["role"])) == sorted(json.dumps(getatt(f"{f}Role")) for f in fnames),
          f"{where}{name}: a new function given one of the functions' roles")
    check(iam["source"] == ["aws.iam"] and iam["detail"]["eventSource"] == ["iam.amazonaws.com"]
          and sorted(iam["detail"]["eventName"]) == IAM_CHANGES,
          f"{where}{name}: inline and managed policy changes and trust policy changes of a role")
    check(iam["detail"]["requestParameters"]["roleName"] == role_names, f"{where}{name}: every role of the stack, by name")
    check(any(a["Properties"].get("Dimensions", [{}])[0].get("Value") == ref(name) and a["Properties"]["MetricName"] == "TriggeredRules"
              for a in res.values() if a["Type"] == "AWS::CloudWatch::Alarm"), f"{where}{name}: an alarm on the rule")
check_change_rule(template, "StackChangeRule", ["BackupFunction", "OperatorFunction", "CustodyFunction"],
                  [ref("BackupFunctionRole"), ref("OperatorFunctionRole"), ref("CustodyFunctionRole"),
                   {"Fn::If": ["HasDrillSchedule", ref("DrillSchedulerRole"), ref("AWS::NoValue")]},
                   {"Fn::If": ["HasCustodyDrillSchedule", ref("CustodyDrillSchedulerRole"), ref("AWS::NoValue")]},
                   {"Fn::If": ["CreateProducerRole", ref("ProducerRole"), ref("AWS::NoValue")]}], "")
check(sorted(of_type("AWS::IAM::Role")) == ["BackupFunctionRole", "CustodyDrillSchedulerRole", "CustodyFunctionRole", "DrillSchedulerRole", "OperatorFunctionRole", "ProducerRole"],
      "the change rule names every role of the stack (the producer role too: a change to its trust or policy changes who may send)")

# Least privilege: each function's role and the key policy statements naming it grant exactly the
# actions that function's code calls, on the stack's own key and table. The SDK calls are found in
# src/; which function runs each adapter is said below (a new adapter must be added here).
# ReEncrypt needs two actions: ReEncryptFrom on the source key, ReEncryptTo on the destination.
SDK_TO_IAM = {"generate_data_key": ["kms:GenerateDataKey"], "decrypt": ["kms:Decrypt"], "encrypt": ["kms:Encrypt"],
              "re_encrypt": ["kms:ReEncryptFrom", "kms:ReEncryptTo"], "describe_key": ["kms:DescribeKey"],
              "put_item": ["dynamodb:PutItem"], "get_item": ["dynamodb:GetItem"],
              "update_item": ["dynamodb:UpdateItem"], "delete_item": ["dynamodb:DeleteItem"], "query": ["dynamodb:Query"],
              # A transaction is authorized as the writes inside it (the backup's are a Put and an Update).
              "transact_write_items": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
              "batch_get_item": ["dynamodb:BatchGetItem"], "scan": ["dynamodb:Scan"],
              "get_secret_value": ["secretsmanager:GetSecretValue"],
              "send_message": ["sqs:SendMessage"],
              # A batch is authorized as its single action.
              "change_message_visibility_batch": ["sqs:ChangeMessageVisibility"],
              "put_events": ["events:PutEvents"],
              # The client's own configuration (its region): no request, no IAM action.
              "config": []}
# Which functions run each adapter that calls AWS (src/app.rs wires them; the backup function
# refuses every operator action before any of its adapters is reached).
FILE_FUNCTIONS = {
    "adapters/dynamodb/shares.rs": {"backup", "operator"},       # written by backups; read by restore, verify, drills
    "adapters/dynamodb/checkpoints.rs": {"backup", "operator"},  # a backup's record; recover's too
    "adapters/dynamodb/catalogue.rs": {"operator"},              # list: a client's checkpoints (Query)
    "adapters/dynamodb/recoveries.rs": {"operator"},             # recover's records
    "adapters/dynamodb/rotation.rs": {"operator"},               # rotate (Scan, or a client's Query)
    "adapters/dynamodb/drill.rs": {"operator", "custody"},       # drills (Scan) and their cursor; the custody drill's cursor too
    "adapters/dynamodb/custodian.rs": {"custody"},
    # custody drills: custodian shares (Scan), and a pair's public values in the backup table
    "adapters/dynamodb/custody_drill.rs": {"custody"},
    "adapters/secrets_manager.rs": {"custody"},
    "adapters/custodian_key.rs": {"operator"},                   # Portal-managed eject's custodian API key
    # recover hands the new shares to the queue; the backup function sends a message waiting for
    # Portal's budget back to it (a visibility change, or a delayed copy)
    "adapters/sqs.rs": {"backup", "operator"},
    # the Portal rate limiter: every Portal call of both functions reserves its slot
    "adapters/dynamodb/rate_limit.rs": {"backup", "operator"},
    "adapters/eventbridge.rs": {"backup"},                       # outcome events (app.rs wires them for backups only)
    # The envelope: the AWS Encryption SDK's GenerateDataKey and Decrypt for every function, under
    # its own key. DescribeKey resolves an alias (and rotate's current key); ReEncrypt is rotate's.
    "adapters/kms.rs": {"backup", "operator", "custody"},
}
CALL_FUNCTIONS = {("adapters/kms.rs", "describe_key"): {"backup", "operator"},
                  ("adapters/kms.rs", "re_encrypt"): {"operator"},
                  # a waiting message's visibility: the backup function's batches only
                  ("adapters/sqs.rs", "change_message_visibility_batch"): {"backup"}}
# A local named `client` that is a client id (a &str), not an SDK client: Rust's own methods are
# no AWS operation.
RUST_METHODS = {"to_owned", "to_string", "clone", "as_str", "as_ref", "len", "is_empty"}
called = {"backup": set(), "operator": set(), "custody": set()}
for path in (ROOT / "src").rglob("*.rs"):
    if "/sim/" in str(path):
        continue
    code = path.read_text().split("#[cfg(test)]")[0]
    rel = str(path.relative_to(ROOT / "src"))
    # `.client.op()`, `.client().op()`, or `client\n .op()` (a client passed as an argument).
    for op in re.findall(r"[.\s(&]client(?:\(\))?\s*\.\s*([a-z_]+)\(\)", code):
        if op in RUST_METHODS:
            continue
        check(op in SDK_TO_IAM, f"SDK call {op} in {path.name} has a known IAM action")
        check(rel in FILE_FUNCTIONS, f"src/{rel} makes an SDK call ({op}): say in FILE_FUNCTIONS which functions run it")
        for f in CALL_FUNCTIONS.get((rel, op), FILE_FUNCTIONS[rel]):
            called[f].update(SDK_TO_IAM[op])
# SQS polling is the event source mapping's, made with the backup function's role; not in src/.
called["backup"] |= {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
# With Tracing=On, Lambda's X-Ray daemon puts each function's trace segments with its role; not in src/.
for f in called:
    called[f] |= set(XRAY_ACTIONS)
ahead = {f: sorted(c - called[f]) for f, c in AHEAD_OF_CODE_CALLS.items() if c - called[f]}
for f, c in AHEAD_OF_CODE_CALLS.items():
    called[f] |= c
# Granted: each role's IAM statements (conditional ones count, as their true branch) and the key
# policy statements that name the role.
ROLE_FUNCTION = {"BackupFunctionRole": "backup", "OperatorFunctionRole": "operator", "CustodyFunctionRole": "custody"}
check(sorted(ROLE_FUNCTION) == sorted(roles), "every function role is checked against its function's calls")
role_statements = {}
for rname, role in roles.items():
    sts = role_statements.setdefault(rname, [])
    for pol in role["Properties"]["Policies"]:
        sts.extend(unwrap(pol["PolicyDocument"]["Statement"]))
    for kname, k in keys.items():
        for st in unwrap(k["Properties"]["KeyPolicy"]["Statement"]):
            if st.get("Principal", {}).get("AWS") == getatt(rname):
                sts.append(st)
for rname, function in ROLE_FUNCTION.items():
    granted = {a for st in role_statements[rname] for a in actions(st)}
    check(granted == called[function],
          f"{rname} grants exactly the calls the {function} function makes: granted {sorted(granted)}, called {sorted(called[function])}")
print("  calls by function: " + "; ".join(f"{f} -> {sorted(c)}" for f, c in sorted(called.items())))
src_rs = "".join(f.read_text() for f in (ROOT / "src").rglob("*.rs") if "/sim/" not in str(f))
print("  granted ahead of the code: " + ("; ".join(
    [f"{f} calls {c}" for f, c in sorted(ahead.items())]
    + [f"setting {v}" for v in sorted(AHEAD_OF_CODE_VARS) if f'"{v}"' not in config_rs]) or "nothing"))
statements = [st for sts in role_statements.values() for st in sts]
retired = {st["Sid"]: (rname, st) for rname, sts in role_statements.items() for st in sts if "Retired" in st.get("Sid", "")}
check(sorted(retired) == ["RetiredKeysOpenAndReEncryptFromOnly", "RetiredKeysOpenOnly"], f"one statement for retired keys per backup-side role: {sorted(retired)}")
check(retired["RetiredKeysOpenOnly"][0] == "BackupFunctionRole" and actions(retired["RetiredKeysOpenOnly"][1]) == ["kms:Decrypt"],
      "retired keys, for the backup function: open only (a request sealed under a retired key)")
check(retired["RetiredKeysOpenAndReEncryptFromOnly"][0] == "OperatorFunctionRole"
      and sorted(actions(retired["RetiredKeysOpenAndReEncryptFromOnly"][1])) == ["kms:Decrypt", "kms:ReEncryptFrom"],
      "retired keys, for the operator function: open and re-wrap from, never seal or re-wrap to")
deployers = [st for st in statements if st.get("Sid", "").startswith("DeployersKeySeals") and "EjectShares" not in st["Sid"]]
check(len(deployers) == 2 and all(backup_purposes_only(st) for st in deployers)
      and all(backup_purposes_only(st) for _, st in retired.values()),
      "the deployer's key and the retired keys: only the backup purposes (or none)")
deployers_eject = {rname: st for rname, sts in role_statements.items() for st in sts if st.get("Sid") == "DeployersKeySealsEjectShares"}
check(list(deployers_eject) == ["OperatorFunctionRole"] and actions(deployers_eject["OperatorFunctionRole"]) == ["kms:GenerateDataKey"]
      and deployers_eject["OperatorFunctionRole"]["Resource"] == ref("KmsKeyArn")
      and deployers_eject["OperatorFunctionRole"]["Condition"] == EJECT_CONTEXT,
      "under the deployer's key, as under the stack's: the operator function seals eject shares (never opens them); no other role")
check(template["Conditions"]["HasRetiredKeys"] == {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", ref("RetiredKmsKeyArns")]}, ""]}]}, "retired keys are granted only when some are listed")
check(all(st["Resource"] == ref("RetiredKmsKeyArns") for _, st in retired.values()), "retired keys: only the listed ARNs")
for st in statements:
    check(st["Effect"] == "Allow", "allow statements only")
    services = {a.split(":")[0] for a in actions(st)}
    check(len(services) == 1, f"{st['Sid']}: one service per statement")
    check("kms:ReEncryptFrom" not in actions(st) or "Retired" in st["Sid"], f"{st['Sid']}: ReEncryptFrom only on retired keys")
kms = next(st for st in statements if st["Sid"] == "BackupFunctionSealsAndOpensBackupShares")
okms = next(st for st in statements if st["Sid"] == "OperatorFunctionSealsAndOpensBackupShares")
check(sorted(actions(kms)) == ["kms:Decrypt", "kms:GenerateDataKey"], "the backup function seals and opens, never re-wraps")
check(sorted(actions(okms)) == ["kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptTo"] and okms["Condition"] == kms["Condition"],
      "the operator function seals, opens and re-wraps into the current key (rotate), under the same condition")
check(all("kms:ReEncryptTo" not in actions(st) for st in role_statements["BackupFunctionRole"]), "the backup role re-wraps nothing")
for st in statements:
    if st is not kms and actions(st)[0].startswith("kms:") and actions(st) != ["kms:DescribeKey"] and "ViaService" not in str(st.get("Condition")) and "Custody" not in st["Sid"]:
        expected = EJECT_CONTEXT if "EjectShares" in st["Sid"] else kms["Condition"]
        check(st["Condition"] == expected, f"{st['Sid']}: the same encryption context condition (its own for eject shares)")
    if actions(st) == ["kms:DescribeKey"]:
        check("Condition" not in st, f"{st['Sid']}: DescribeKey carries no encryption context, so no context condition")
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

# Outcome events: the backup function's role alone may put events, on OutcomeEventBusName's bus
# only (its ARN, built from the name), and only events whose source is portal-backup (the source
# src/adapters/eventbridge.rs sends).
all_roles = of_type("AWS::IAM::Role")
put_events = [(rname, st) for rname, role in all_roles.items() for pol in role["Properties"].get("Policies", [])
              for st in pol["PolicyDocument"]["Statement"] if "events:" in json.dumps(st)]
check(len(put_events) == 1 and put_events[0][0] == "BackupFunctionRole", f"only the backup function's role may put events: {[r for r, _ in put_events]}")
check(put_events[0][1] == {"Fn::If": ["HasOutcomeEvents",
                                      {"Sid": "PutOutcomeEvents", "Effect": "Allow", "Action": "events:PutEvents",
                                       "Resource": {"Fn::Sub": OUTCOME_BUS_ARN},
                                       "Condition": {"StringEquals": {"events:source": "portal-backup"}}},
                                      ref("AWS::NoValue")]},
      "the backup role: events:PutEvents on exactly the outcome bus's ARN, events:source portal-backup, only when events are on")
eventbridge_rs = (ROOT / "src/adapters/eventbridge.rs").read_text()
check('pub const SOURCE: &str = "portal-backup";' in eventbridge_rs and ".source(SOURCE)" in eventbridge_rs,
      "the events' source is portal-backup (src/adapters/eventbridge.rs), the grant's events:source")
check(not any("events:" in json.dumps(k["Properties"]["KeyPolicy"]) for k in keys.values()), "no key policy names EventBridge")
check(C["HasOutcomeEvents"] == {"Fn::Not": [{"Fn::Equals": [ref("OutcomeEventBusName"), ""]}]}
      and P["OutcomeEventBusName"]["Default"] == "default", "outcome events on the default bus by default; an empty name turns them off")
check(env.get("OUTCOME_EVENT_BUS") == {"Fn::If": ["HasOutcomeEvents", ref("OutcomeEventBusName"), ref("AWS::NoValue")]}
      and '"OUTCOME_EVENT_BUS"' in config_rs, "the backup function is told the bus (unset when events are off)")
check([n for n, f in functions.items() if "OUTCOME_EVENT_BUS" in f["Properties"]["Environment"]["Variables"]] == ["BackupFunction"],
      "only the backup function is told the outcome bus")
BUS_OK = ["default", "portal-outcomes", "aws.partner/example.com/123/events", ""]
BUS_BAD = ["arn:aws:events:us-east-1:123456789012:event-bus/default", "*", "bus name", "a" * 257]
check(all(re.fullmatch(P["OutcomeEventBusName"]["AllowedPattern"], v) for v in BUS_OK)
      and not any(re.fullmatch(P["OutcomeEventBusName"]["AllowedPattern"], v) for v in BUS_BAD),
      "OutcomeEventBusName is a bus name in this account (never an ARN or a wildcard), so the grant's ARN is that bus's")

# Operations: DLQ alarm and outputs.
alarms = of_type("AWS::CloudWatch::Alarm")
check(any(a["Properties"].get("Dimensions", [{}])[0].get("Value") == getatt("DeadLetterQueue", "QueueName") for a in alarms.values()),
      "an alarm on the DLQ's depth")
restores = [a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "Restores"]
metrics_rs = (ROOT / "src/entry/metrics.rs").read_text()
STACK_SERVICE = [{"Name": "Stack", "Value": ref("AWS::StackName")}, {"Name": "Service", "Value": "portal-backup"}]
check(len(restores) == 1 and restores[0]["Namespace"] == "PortalBackup" and '"Restores"' in metrics_rs
      and restores[0]["Threshold"] == 0 and restores[0]["ComparisonOperator"] == "GreaterThanThreshold"
      and restores[0]["Dimensions"] == STACK_SERVICE,
      "an alarm on every restore and recover (the Restores metric the function emits)")
check(all(a["Properties"]["AlarmActions"] == [ALARM_DESTINATION] for a in alarms.values()),
      "every alarm notifies the one alarm destination (AlarmTopicArn, or the stack's topic)")
check(all(r["Properties"]["Targets"] == [{"Id": "alarm-topic", "Arn": ALARM_DESTINATION}] for r in of_type("AWS::Events::Rule").values()),
      "every rule's events go to the alarm destination")
check(sorted(of_type("AWS::Events::Rule")) == ["KeyPolicyChangeRule", "StackChangeRule", "WebhookSecretReadRule"],
      "three CloudTrail rules: the keys, the functions and roles, the webhook secret's reads")
check(all(a["Properties"].get("AlarmDescription") for a in alarms.values()), "every alarm says what it means and what to do")
# The custody function's EMF metrics (namespace PortalBackup, dimension Service), each alarmed above a
# threshold parameter, the metric named where the code emits it.
for alarm, metric, threshold, default in [("WebhookRefusedAlarm", "WebhookRefused", "WebhookRefusedAlarmThreshold", 0),
                                          ("CustodianFetchAlarm", "CustodianSharesFetched", "CustodianFetchAlarmThreshold", 200)]:
    a = alarms[alarm]["Properties"]
    check(a["Namespace"] == "PortalBackup" and a["MetricName"] == metric and a["Statistic"] == "Sum" and a["Period"] == 300
          and a["Dimensions"] == STACK_SERVICE, f"{alarm}: Sum of {metric} over 5 minutes")
    check(a["Threshold"] == ref(threshold) and a["ComparisonOperator"] == "GreaterThanThreshold"
          and P[threshold]["Default"] == default and a["TreatMissingData"] == "notBreaching",
          f"{alarm}: above {threshold} (default {default})")
    check(f'"{metric}"' in src_rs, f"{alarm}: the function emits {metric} (src/)")
read_alarm = alarms["WebhookSecretReadAlarm"]["Properties"]
check(read_alarm["Namespace"] == "AWS/Events" and read_alarm["MetricName"] == "TriggeredRules"
      and read_alarm["Dimensions"] == [{"Name": "RuleName", "Value": ref("WebhookSecretReadRule")}]
      and read_alarm["Threshold"] == 0 and read_alarm["ComparisonOperator"] == "GreaterThanThreshold",
      "an alarm on any read of the webhook secret by someone else")

# Restore drills: the schedule, its payload, the alarms on failures and on silence. The schedule
# reaches only the operator function, with one fixed payload, which is the only drill the function
# accepts (DRILL_SAMPLE).
schedules = of_type("AWS::Scheduler::Schedule")
check(sorted(schedules) == ["RestoreDrillSchedule", "ScheduledCustodyDrill"], "two schedules: the restore drill and the custody drill")
sched = schedules["RestoreDrillSchedule"]
check(sched.get("Condition") == "HasDrillSchedule" and P["DrillSchedule"]["Default"] == "rate(1 day)",
      "drills run daily by default, and an empty DrillSchedule turns them off")
check(template["Conditions"]["HasDrillSchedule"] == {"Fn::Not": [{"Fn::Equals": [ref("DrillSchedule"), ""]}]}, "HasDrillSchedule: a schedule is set")
target = sched["Properties"]["Target"]
check(target["Arn"] == getatt("OperatorFunction", "Arn") and target["RoleArn"] == getatt("DrillSchedulerRole", "Arn"),
      "the schedule invokes the operator function with its own role")
check(sched["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-restore-drill"}, "the schedule has a fixed name")
groups = of_type("AWS::Scheduler::ScheduleGroup")
check(sorted(groups) == ["CustodyDrillScheduleGroup", "DrillScheduleGroup"] and groups["DrillScheduleGroup"].get("Condition") == "HasDrillSchedule"
      and sched["Properties"]["GroupName"] == ref("DrillScheduleGroup"), "the schedule is in a group of its own")
check(DRILL_GROUP_ARN["Fn::Sub"].endswith(":schedule-group/" + groups["DrillScheduleGroup"]["Properties"]["Name"]["Fn::Sub"]),
      "the scheduler role's trust names that group (Scheduler's aws:SourceArn is the schedule group's ARN)")
check([k for k, v in schedules.items() if v["Properties"].get("GroupName") == ref("DrillScheduleGroup")] == ["RestoreDrillSchedule"],
      "the group holds the drill schedule only")
check(sched["Properties"]["ScheduleExpression"] == ref("DrillSchedule"), "the schedule is the DrillSchedule parameter")
payload = json.loads(target["Input"]["Fn::Sub"].replace("${DrillSample}", "20"))
check(payload == {"action": "drill", "sample": 20} and target["Input"]["Fn::Sub"].count("${") == 1,
      f"the schedule's payload is exactly a drill of DrillSample backups: {payload}")
check(oenv["DRILL_SAMPLE"] == ref("DrillSample"), "the operator function accepts a drill of the schedule's sample only (DRILL_SAMPLE)")
check(P["DrillSample"]["Default"] == 20 and P["DrillSample"]["MinValue"] == 1 and P["DrillSample"]["MaxValue"] == 500,
      "DrillSample: 20 by default, within what the function accepts (1-500)")
drill_rs = (ROOT / "src/workflow/drill.rs").read_text()
check("MAX_SAMPLE: u32 = 500" in drill_rs, "the function's largest sample is the template's MaxValue")
failures = [a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "DrillFailures"]
check(len(failures) == 1 and failures[0]["Threshold"] == 1 and failures[0]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
      and failures[0]["Statistic"] == "Sum" and failures[0]["Namespace"] == "PortalBackup"
      and '"DrillFailures"' in metrics_rs, "an alarm on DrillFailures >= 1 (the metric the function emits)")
missing = [a for a in alarms.values() if a["Properties"].get("MetricName") == "DrillsVerified"]
check(len(missing) == 1 and missing[0]["Properties"]["TreatMissingData"] == "breaching" and missing[0].get("Condition") == "HasDrillSchedule",
      "an alarm when no drill reports at all (silence is not success)")
# Key mismatches: a half that opens but does not check against its wallet's public values. Each
# alarm: Sum > 0 of its metric over its period, to the alarm destination, missing data not breaching.
def any_over_zero(name, metric, period, dimensions=STACK_SERVICE, condition=None, namespace="PortalBackup"):
    a = alarms[name]
    ap = a["Properties"]
    check(a.get("Condition") == condition and ap["Namespace"] == namespace and ap["MetricName"] == metric
          and ap.get("Dimensions") == dimensions and ap["Statistic"] == "Sum" and ap["Period"] == period and ap["EvaluationPeriods"] == 1
          and ap["Threshold"] == 0 and ap["ComparisonOperator"] == "GreaterThanThreshold" and ap["TreatMissingData"] == "notBreaching"
          and ap["AlarmActions"] == [ALARM_DESTINATION] and "AlarmDescription" in ap,
          f"{name}: Sum({metric}) > 0 over {period} s, to the alarm destination")
    return ap
dkm = any_over_zero("DrillKeyMismatchAlarm", "DrillKeyMismatches", alarms["DrillFailuresAlarm"]["Properties"]["Period"],
                    condition=alarms["DrillFailuresAlarm"].get("Condition"))
check('"DrillKeyMismatches"' in metrics_rs and "KEY_MISMATCH" in dkm["AlarmDescription"] and "eject" in dkm["AlarmDescription"],
      "DrillKeyMismatchAlarm: on the metric the drill emits; it says the backup would not eject, and where to read (KEY_MISMATCH)")
# The backup function logs a KEY_MISMATCH line (JSON, message at top level) when Portal hands it a
# share that fails the check; a metric filter counts them, in a namespace of the stack's own (a
# filter's dimensions come from the log line, which does not name the stack).
STACK_NAMESPACE = {"Fn::Sub": "PortalBackup/${AWS::StackName}"}
filters = of_type("AWS::Logs::MetricFilter")
check(sorted(filters) == ["BackupKeyMismatchMetricFilter", "PortalRateLimitedMetricFilter"],
      "two metric filters, both in the backup function's log: key mismatches, and backups Portal rate-limited")
mf = filters["BackupKeyMismatchMetricFilter"]["Properties"]
check(mf["LogGroupName"] == ref("BackupFunctionLogs") and mf["FilterPattern"] == '{ $.message = "KEY_MISMATCH*" }'
      and mf["MetricTransformations"] == [{"MetricNamespace": STACK_NAMESPACE, "MetricName": "BackupKeyMismatches",
                                           "MetricValue": "1", "DefaultValue": 0}],
      "the backup function's KEY_MISMATCH lines count 1 each (0 otherwise) in PortalBackup/<stack name>, BackupKeyMismatches")
check('"KEY_MISMATCH: ' in (ROOT / "src/workflow/backup/steps.rs").read_text()
      and "flatten_event(true)" in (ROOT / "src/telemetry.rs").read_text(),
      "the backup function logs KEY_MISMATCH at the start of a top-level message (the filter's pattern)")
bkm = any_over_zero("BackupKeyMismatchAlarm", "BackupKeyMismatches", 300, dimensions=None, namespace=STACK_NAMESPACE)
check("KEY_MISMATCH" in bkm["AlarmDescription"], "BackupKeyMismatchAlarm says where to read (KEY_MISMATCH)")
# Custody drills: the custody function proves a sample of the custodian shares itself, on a schedule
# of its own (its own group and role), with one fixed payload, the only one it accepts (DRILL_SAMPLE).
csched = schedules["ScheduledCustodyDrill"]
cp = csched["Properties"]
check(csched.get("Condition") == "HasCustodyDrillSchedule"
      and template["Conditions"]["HasCustodyDrillSchedule"] == {"Fn::Not": [{"Fn::Equals": [ref("CustodyDrillSchedule"), ""]}]}
      and P["CustodyDrillSchedule"]["Default"] == P["DrillSchedule"]["Default"]
      and P["CustodyDrillSchedule"]["AllowedPattern"] == P["DrillSchedule"]["AllowedPattern"],
      "custody drills run as often as restore drills by default, and an empty CustodyDrillSchedule turns them off")
check(cp["Target"]["Arn"] == getatt("CustodyFunction") and cp["Target"]["RoleArn"] == getatt("CustodyDrillSchedulerRole")
      and cp["ScheduleExpression"] == ref("CustodyDrillSchedule") and cp["Name"] == {"Fn::Sub": "${AWS::StackName}-custody-drill"},
      "the custody drill schedule invokes the custody function with its own role")
check(cp["GroupName"] == ref("CustodyDrillScheduleGroup") and groups["CustodyDrillScheduleGroup"].get("Condition") == "HasCustodyDrillSchedule"
      and CUSTODY_DRILL_GROUP_ARN["Fn::Sub"].endswith(":schedule-group/" + groups["CustodyDrillScheduleGroup"]["Properties"]["Name"]["Fn::Sub"])
      and [k for k, v in schedules.items() if v["Properties"].get("GroupName") == ref("CustodyDrillScheduleGroup")] == ["ScheduledCustodyDrill"],
      "the custody drill schedule is alone in a group of its own, the one its role's trust names")
cpayload = json.loads(cp["Target"]["Input"]["Fn::Sub"].replace("${CustodyDrillSample}", "20"))
check(cpayload == {"action": "custody-drill", "sample": 20} and cp["Target"]["Input"]["Fn::Sub"].count("${") == 1,
      f"the custody drill's payload is exactly a custody drill of CustodyDrillSample shares: {cpayload}")
check(cenv["DRILL_SAMPLE"] == ref("CustodyDrillSample") and P["CustodyDrillSample"]["Default"] == 20
      and P["CustodyDrillSample"]["MinValue"] == 1 and P["CustodyDrillSample"]["MaxValue"] == 500,
      "CustodyDrillSample: 20 by default, 1-500; the custody function accepts that sample only")
any_over_zero("CustodyDrillFailuresAlarm", "CustodyDrillFailures", 3600)
ckm = any_over_zero("CustodyDrillKeyMismatchAlarm", "CustodyDrillKeyMismatches", 3600)
check("KEY_MISMATCH" in ckm["AlarmDescription"] and "eject" in ckm["AlarmDescription"], "CustodyDrillKeyMismatchAlarm says what it means")
cmissing = alarms["CustodyDrillsMissingAlarm"]
check(cmissing.get("Condition") == "HasCustodyDrillSchedule" and cmissing["Properties"]["MetricName"] == "CustodyDrillsVerified"
      and {k: v for k, v in cmissing["Properties"].items() if k not in ("AlarmDescription", "MetricName")}
      == {k: v for k, v in missing[0]["Properties"].items() if k not in ("AlarmDescription", "MetricName")},
      "CustodyDrillsMissingAlarm: no CustodyDrillsVerified for two periods, as DrillsMissingAlarm (silence is not success)")
for metric in ["CustodyDrillsVerified", "CustodyDrillFailures", "CustodyDrillKeyMismatches"]:
    check(f'"{metric}"' in metrics_rs, f"the custody function emits {metric} (src/entry/metrics.rs)")

# Outcome events that could not be put on the bus: alarmed (a producer waiting on them waits in vain).
oef = any_over_zero("OutcomeEventsFailedAlarm", "OutcomeEventsFailed", 300, condition="HasOutcomeEvents")
check('"OutcomeEventsFailed"' in metrics_rs and '"OutcomeEventsPublished"' in metrics_rs and "outcome event not published" in oef["AlarmDescription"]
      and "outcome event not published" in (ROOT / "src/entry/outcome.rs").read_text(),
      "OutcomeEventsFailedAlarm: on the metric the backup function emits, naming the log line to read")

# Every metric the functions emit carries the stack (STACK_NAME) first in every dimension set, so
# every alarm on a PortalBackup metric names the stack beside the service: two stacks in one account
# never share a metric or an alarm. Metric math alarms are checked metric by metric.
check('names.insert(0, json!("Stack"))' in metrics_rs and 'doc["Stack"] = json!(stack)' in metrics_rs
      and 'std::env::var("STACK_NAME")' in config_rs and "set_stack(&stack)" in (ROOT / "src/app.rs").read_text(),
      "the functions stamp every EMF document with the stack (STACK_NAME) as a dimension")
def sub_text(expr):
    """The text of a string, or of a !Sub of one."""
    return expr["Fn::Sub"] if isinstance(expr, dict) and "Fn::Sub" in expr else expr
INSIGHTS_QUERY = re.compile(r"SELECT (SUM|MAX|MIN|AVG|COUNT)\((\w+)\) FROM SCHEMA\(([^)]*)\)(?: WHERE (.*))?")
def insights(expr):
    """A Metrics Insights query (a string, or !Sub of one): (namespace, metric, schema dimensions, its WHERE as
    {dimension: value}). Only ANDed equalities are read: anything else fails the check."""
    text = sub_text(expr)
    m = INSIGHTS_QUERY.fullmatch(text)
    check(m is not None, f"a Metrics Insights query of the form this test reads: {text}")
    _, metric, schema, where = m.groups()
    namespace, *dims = [x.strip() for x in schema.split(",")]
    where = where or ""
    check(re.sub(r"(\w+) = '[^']*'", "", where).replace("AND", "").strip() == "", f"the query's WHERE only ANDs equalities: {where}")
    return namespace, metric, dims, dict(re.findall(r"(\w+) = '([^']*)'", where))
def as_dimensions(conds):
    return [{"Name": k, "Value": ref("AWS::StackName") if v == "${AWS::StackName}" else v} for k, v in conds.items()]
def alarm_metrics(props):
    """(namespace, dimensions) of each metric an alarm watches: its one metric, or each MetricStat of its math,
    or the metrics a Metrics Insights query selects (its WHERE's dimensions)."""
    if "Metrics" in props:
        out = []
        for m in props["Metrics"]:
            if "MetricStat" in m:
                out.append((m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"].get("Dimensions")))
            elif str(sub_text(m.get("Expression", ""))).startswith("SELECT"):
                namespace, _, _, conds = insights(m["Expression"])
                out.append((namespace, as_dimensions(conds)))
        return out
    return [(props["Namespace"], props.get("Dimensions"))]
def check_stack_alarms(tmpl, where):
    res = tmpl["Resources"]
    seen = 0
    for k, v in res.items():
        if v["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for namespace, dims in alarm_metrics(v["Properties"]):
            if namespace == "PortalBackup":
                seen += 1
                check(dims is not None and {"Name": "Stack", "Value": ref("AWS::StackName")} in dims
                      and {"Name": "Service", "Value": "portal-backup"} in dims,
                      f"{where}{k}: a PortalBackup metric, named by its Stack (AWS::StackName) and Service dimensions")
            elif namespace == STACK_NAMESPACE:
                seen += 1
            else:
                check(isinstance(namespace, str) and namespace.startswith("AWS/"),
                      f"{where}{k}: a PortalBackup metric of the stack's, or an AWS metric of one of its resources ({namespace})")
    for k, v in res.items():
        if v["Type"] == "AWS::Logs::MetricFilter":
            for mt in v["Properties"]["MetricTransformations"]:
                check(mt["MetricNamespace"] == STACK_NAMESPACE and "Dimensions" not in mt,
                      f"{where}{k}: a log metric in the stack's own namespace, PortalBackup/<stack name>")
    return seen
check(check_stack_alarms(template, "") == 14, "template.yaml: fourteen alarms on the stack's PortalBackup metrics")

# ---- What an on-call engineer watches: a dashboard, saved Logs Insights queries, and alarms on each
# function's health, the backup queue, permanent failures, Portal's rate limit and the webhook API.
# Every PortalBackup metric they name is one the code emits, under a dimension set it emits (Stack
# first, as stamp() puts it), for this stack; every other metric is a log filter's of the template or
# an AWS metric of one of its resources.
error_rs = (ROOT / "src/workflow/error.rs").read_text()
STEP_NAMES = dict(re.findall(r'Step::(\w+) => "(\w+)"', error_rs))
TIMED_STEPS = sorted({STEP_NAMES[s] for s in re.findall(r"\.timed\(Step::(\w+)", src_rs)})
check(len(TIMED_STEPS) >= 3, f"the backup workflow times its steps (RunStats::timed): {TIMED_STEPS}")
def emitted_metrics():
    """{metric: {dimension sets}} of the EMF documents src/entry/metrics.rs writes, read from its source,
    function by function: the names each declares ({"Name": "…"}, count("…"), a name chosen between two
    literals, "<step>LatencyMs" for each timed step) and its dimension sets, with Stack first."""
    out = {}
    for body in re.split(r"\n(?:pub )?fn ", metrics_rs.split("#[cfg(test)]")[0])[1:]:
        names = set(re.findall(r'\{"Name": "(\w+)"', body)) | set(re.findall(r'count\(\s*"(\w+)"', body))
        for pair in re.findall(r'let name = if [^{]*\{\s*"(\w+)"\s*\}\s*else\s*\{\s*"(\w+)"\s*\}', body):
            names |= set(pair)
        for suffix in re.findall(r'format!\("\{\}(\w+)", step\.as_str\(\)\)', body):
            names |= {step + suffix for step in TIMED_STEPS}
        sets = {frozenset(("Stack",) + tuple(re.findall(r'"(\w+)"', d))) for d in re.findall(r'\[("Service"(?:, "\w+")*)\]', body)}
        for name in names:
            check(bool(sets), f"src/entry/metrics.rs: {name} is written with its dimension sets")
            out.setdefault(name, set()).update(sets)
    return out
EMITTED = emitted_metrics()
SS = frozenset({"Stack", "Service"})
check({"BackupsCompleted", "BackupFailures", "Retries", "ResumedCheckpoints", "BackupCalls", "Restores", "OutcomeEventsPublished",
       "OutcomeEventsFailed", "DrillsVerified", "DrillCycleAgeSeconds", "CustodyDrillFailures", "WebhookCalls", "WebhookRefused",
       "CustodianSharesFetched"} | {f"{s}LatencyMs" for s in TIMED_STEPS} <= set(EMITTED)
      and EMITTED["BackupFailures"] == {SS, SS | {"Step", "Kind"}} and EMITTED["Restores"] == {SS, SS | {"Action"}}
      and EMITTED["WebhookCalls"] == {SS, SS | {"Hook", "Outcome"}} and EMITTED["DrillFailures"] == {SS},
      f"the metrics and dimension sets src/entry/metrics.rs emits are read from its source: {sorted(EMITTED)}")
DIMENSION_VALUES = {
    "Service": {"portal-backup"},
    "Step": set(STEP_NAMES.values()),
    "Kind": {k for k in ("transient", "permanent") if f'"{k}"' in error_rs},
    "Action": set(re.findall(r'Action::\w+ => "(\w+)"', (ROOT / "src/workflow/restore.rs").read_text())),
}
DIMENSION_VALUES["Api"] = set(re.findall(r'PortalApi::\w+ => "(\w+)"', (ROOT / "src/ports/rate_limit.rs").read_text()))
check(DIMENSION_VALUES["Kind"] == {"transient", "permanent"} and {"restore", "recover"} <= DIMENSION_VALUES["Action"]
      and DIMENSION_VALUES["Api"] == {"mpc", "client"},
      "the Kind, Action and Api values are read from src/")
# The Portal rate limiter's metrics: per API, what waited, how long, and what was held back; per
# batch, the messages sent back to the queue to wait.
check(all(EMITTED.get(m) == {SS | {"Api"}} for m in ["PortalRateWaits", "PortalRateWaitMs", "PortalRateHeld"])
      and EMITTED.get("MessagesDeferred") == {SS},
      "src/entry/metrics.rs emits PortalRateWaits, PortalRateWaitMs and PortalRateHeld by [Stack, Service, Api], MessagesDeferred by [Stack, Service]")
# No EMF metric tells Portal's 429 apart (Retries and transient failures count every transient cause):
# the 429 alarm counts the failure code in the backup function's log. A 429 metric in the code
# would be the better source: this check then says to move the alarm onto it.
check(not [m for m in EMITTED if "429" in m or "RateLimit" in m],
      "the code emits no 429 metric of its own (else PortalRateLimitedAlarm should watch it, not the log)")

def log_filter_metrics(tmpl):
    return {mt["MetricName"] for v in tmpl["Resources"].values() if v["Type"] == "AWS::Logs::MetricFilter"
            for mt in v["Properties"]["MetricTransformations"] if mt["MetricNamespace"] == STACK_NAMESPACE}
AWS_METRICS = {"AWS/Lambda": {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"},
               "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesNotVisible",
                           "NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted"},
               "AWS/ApiGateway": {"4XXError", "5XXError", "Count", "Latency", "IntegrationLatency"},
               "AWS/Events": {"TriggeredRules", "Invocations", "FailedInvocations"}}
def named_ref(expr):
    return expr.get("Ref") if isinstance(expr, dict) else None
ANY = object()  # a dimension a query or a SEARCH leaves open (every value)
def check_metric(tmpl, where, namespace, metric, dims):
    """The metric exists: a PortalBackup metric the code emits, with one of its dimension sets, named by this
    stack's Stack; a log filter's metric of this template, in the stack's namespace; or an AWS metric of
    one of this template's resources. `dims` {name: value}, each value as the template writes it."""
    res = tmpl["Resources"]
    if namespace == "PortalBackup":
        check(metric in EMITTED, f"{where}: PortalBackup {metric} is a metric the code emits (src/entry/metrics.rs, or the rate limiter's)")
        check(frozenset(dims) in EMITTED[metric], f"{where}: {metric} by {sorted(dims)}, a dimension set the code emits: {sorted(map(sorted, EMITTED[metric]))}")
        check(dims.get("Stack") == ref("AWS::StackName"), f"{where}: {metric} of this stack (Stack = the stack's name)")
        for k, v in dims.items():
            check(k not in DIMENSION_VALUES or v in DIMENSION_VALUES[k] or v is ANY, f"{where}: {metric}: {k}={v} is a value the code writes")
    elif namespace == STACK_NAMESPACE:
        check(metric in log_filter_metrics(tmpl) and not dims, f"{where}: {metric} is counted by a metric filter of the template, in PortalBackup/<stack name>")
    elif namespace == "AWS/Lambda":
        fn_ = dims.get("FunctionName")
        check(set(dims) == {"FunctionName"} and named_ref(fn_) in res and res[named_ref(fn_)]["Type"] == "AWS::Serverless::Function",
              f"{where}: AWS/Lambda {metric} of a function of the stack ({fn_})")
    elif namespace == "AWS/SQS":
        q = dims.get("QueueName")
        check(set(dims) == {"QueueName"} and isinstance(q, dict) and q.get("Fn::GetAtt", [None])[0] in res
              and q["Fn::GetAtt"][1] == "QueueName" and res[q["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue",
              f"{where}: AWS/SQS {metric} of a queue of the stack ({q})")
    elif namespace == "AWS/ApiGateway":
        apis = [v["Properties"] for v in res.values() if v["Type"] == "AWS::Serverless::Api"
                and v["Properties"]["Name"] == dims.get("ApiName") and v["Properties"]["StageName"] == dims.get("Stage")]
        check(set(dims) == {"ApiName", "Stage"} and len(apis) == 1, f"{where}: AWS/ApiGateway {metric} of a REST API stage of the stack ({dims})")
    elif namespace == "AWS/Events":
        check(set(dims) == {"RuleName"} and res.get(named_ref(dims["RuleName"]), {}).get("Type") == "AWS::Events::Rule",
              f"{where}: AWS/Events {metric} of a rule of the stack")
    else:
        check(False, f"{where}: a metric of a namespace this stack writes to or watches ({namespace})")
    if isinstance(namespace, str) and namespace.startswith("AWS/"):
        check(metric in AWS_METRICS[namespace], f"{where}: {namespace} publishes {metric}")
def check_alarm_metrics(tmpl, where):
    """Every alarm watches metrics that exist (check_metric); a Metrics Insights query, a schema the code emits."""
    for k, v in tmpl["Resources"].items():
        if v["Type"] != "AWS::CloudWatch::Alarm":
            continue
        p = v["Properties"]
        if "Metrics" not in p:
            check_metric(tmpl, f"{where}{k}", p["Namespace"], p["MetricName"], {d["Name"]: d["Value"] for d in p.get("Dimensions", [])})
            continue
        for m in p["Metrics"]:
            if "MetricStat" in m:
                ms = m["MetricStat"]["Metric"]
                check_metric(tmpl, f"{where}{k}/{m['Id']}", ms["Namespace"], ms["MetricName"], {d["Name"]: d["Value"] for d in ms.get("Dimensions", [])})
            elif str(sub_text(m.get("Expression", ""))).startswith("SELECT"):
                namespace, metric, schema, conds = insights(m["Expression"])
                check(namespace == "PortalBackup" and metric in EMITTED and frozenset(schema) in EMITTED[metric] and set(conds) <= set(schema),
                      f"{where}{k}: its query selects {metric} by {schema}, a dimension set the code emits")
                check_metric(tmpl, f"{where}{k}/{m['Id']}", namespace, metric,
                             {**{d: ANY for d in schema}, **{d["Name"]: d["Value"] for d in as_dimensions(conds)}})
check_alarm_metrics(template, "")

# The dashboard: one !Sub string of JSON naming only the stack's own resources; every metric of it
# exists (as an alarm's must), and it shows what an on-call engineer looks at first.
dash = R["OperationsDashboard"]
check(dash["Type"] == "AWS::CloudWatch::Dashboard" and dash["Properties"]["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-operations"},
      "OperationsDashboard: a dashboard named <stack name>-operations")
body_src = dash["Properties"]["DashboardBody"]["Fn::Sub"]
check(isinstance(body_src, str) and all(x.startswith("AWS::") or x.split(".")[0] in R for x in re.findall(r"\$\{([^}!]*)\}", body_src)),
      "the dashboard's body is one !Sub string naming pseudo parameters and the stack's resources only")
def unsub(value):
    """A value of the dashboard's body as the template writes it elsewhere: Ref, GetAtt, Sub, or plain."""
    if not isinstance(value, str) or "@@" not in value:
        return value
    whole = re.fullmatch(r"@@([^@]+)@@", value)
    if whole:
        return getatt(*whole.group(1).split(".", 1)) if "." in whole.group(1) else ref(whole.group(1))
    return {"Fn::Sub": re.sub(r"@@([^@]+)@@", r"${\1}", value)}
dashboard = json.loads(re.sub(r"\$\{([^}!]*)\}", r"@@\1@@", body_src))
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\} (.*)', '(\w+)', (\d+)\)")
shown = set()
for wd in dashboard["widgets"]:
    if wd["type"] != "metric":
        continue
    props = wd["properties"]
    title = props["title"]
    check(unsub(props["region"]) == ref("AWS::Region"), f"OperationsDashboard/{title}: in the stack's region")
    prev = []
    for row in props["metrics"]:
        opts = row[-1] if row and isinstance(row[-1], dict) else {}
        parts = row[:-1] if opts else row
        if not parts:
            m = SEARCH.fullmatch(opts.get("expression", ""))
            check(m is not None, f"OperationsDashboard/{title}: an expression is a SEARCH this test reads: {opts}")
            schema, terms, _, _ = m.groups()
            namespace, *names = [x.strip() for x in schema.split(",")]
            conds = dict(re.findall(r'(\w+)="([^"]*)"', terms))
            check(re.sub(r'(\w+)="[^"]*"', "", terms).strip() == "", f"OperationsDashboard/{title}: the SEARCH has exact terms only: {terms}")
            metric = conds.pop("MetricName", None)
            check(set(conds) <= set(names), f"OperationsDashboard/{title}: the SEARCH filters on its schema's dimensions")
            check_metric(template, f"OperationsDashboard/{title}", namespace, metric,
                         {**{d: ANY for d in names}, **{k: unsub(v) for k, v in conds.items()}})
            shown.add((json.dumps(namespace), metric, None))
            continue
        parts = [prev[i] if p == "." and i < len(prev) else p for i, p in enumerate(parts)]
        prev = parts
        namespace, metric, *flat = [unsub(x) for x in parts]
        check(len(flat) % 2 == 0, f"OperationsDashboard/{title}: {metric}: dimensions in name, value pairs")
        dims = dict(zip(flat[::2], flat[1::2]))
        check_metric(template, f"OperationsDashboard/{title}", namespace, metric, dims)
        shown.add((json.dumps(namespace), metric, json.dumps(dims, sort_keys=True)))
def shows(namespace, metric, **dims):
    return any(s[0] == json.dumps(namespace) and s[1] == metric and json.loads(s[2]).items() >= dims.items() for s in shown if s[2])
for metric in (["BackupsCompleted", "BackupFailures", "BackupCalls", "Retries", "DrillsVerified", "DrillFailures", "DrillKeyMismatches",
                "DrillCycleAgeSeconds", "CustodyDrillsVerified", "CustodyDrillFailures", "CustodyDrillKeyMismatches",
                "CustodyDrillCycleAgeSeconds", "Restores", "OutcomeEventsPublished", "OutcomeEventsFailed", "WebhookRefused"]
               + [f"{s}LatencyMs" for s in TIMED_STEPS]):
    check(shows("PortalBackup", metric), f"OperationsDashboard shows {metric}")
check({(json.dumps("PortalBackup"), "WebhookCalls", None), (json.dumps("PortalBackup"), "BackupFailures", None)} <= shown,
      "OperationsDashboard shows webhook calls (by hook and outcome) and backup failures (by step and kind)")
check(shows(STACK_NAMESPACE, "PortalRateLimited"), "OperationsDashboard shows the backups Portal rate-limited (429)")
rate_widget = [wd["properties"] for wd in dashboard["widgets"] if wd["type"] == "metric" and wd["properties"]["title"] == "Portal rate limiter"]
check(len(rate_widget) == 1, "OperationsDashboard has one \"Portal rate limiter\" widget")
rate_rows = {(r[1], r[r.index("Api") + 1] if "Api" in r else None) for r in rate_widget[0]["metrics"]}
check(rate_rows == {(m, api) for m in ["PortalRateWaits", "PortalRateWaitMs", "PortalRateHeld"] for api in ["mpc", "client"]}
      | {("MessagesDeferred", None)},
      f"the Portal rate limiter widget shows waits, time waited and calls held back for both APIs, and the messages deferred: {sorted(map(str, rate_rows))}")
for metric in ["PortalRateWaits", "PortalRateWaitMs", "PortalRateHeld"]:
    for api in sorted(DIMENSION_VALUES["Api"]):
        check(shows("PortalBackup", metric, Stack=ref("AWS::StackName"), Service="portal-backup", Api=api), f"OperationsDashboard shows {metric} of the {api} API")
check(shows("PortalBackup", "MessagesDeferred", Stack=ref("AWS::StackName"), Service="portal-backup"), "OperationsDashboard shows MessagesDeferred")
# A tidy grid: 24 columns, no two widgets on the same cell.
cells = {}
for wd in dashboard["widgets"]:
    check(wd["x"] >= 0 and wd["x"] + wd["width"] <= 24, f"OperationsDashboard: a widget within the 24 columns ({wd['properties'].get('title')})")
    for x in range(wd["x"], wd["x"] + wd["width"]):
        for y in range(wd["y"], wd["y"] + wd["height"]):
            check((x, y) not in cells, f"OperationsDashboard: {wd['properties'].get('title')} overlaps {cells.get((x, y))}")
            cells[(x, y)] = wd["properties"].get("title", "text")
for metric in ["ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"]:
    check(shows("AWS/SQS", metric, QueueName=getatt("BackupQueue", "QueueName")), f"OperationsDashboard shows the backup queue's {metric}")
check(shows("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=getatt("DeadLetterQueue", "QueueName")), "OperationsDashboard shows the DLQ's depth")
for name in functions:
    for metric in ["Errors", "Throttles", "Duration"]:
        check(shows("AWS/Lambda", metric, FunctionName=ref(name)), f"OperationsDashboard shows {name}'s {metric}")

# Each function's health: Errors, Throttles, and Duration p99 above 80% of its Timeout.
def check_health_alarms(tmpl, fns, where, batch_functions):
    res = tmpl["Resources"]
    for name in fns:
        fnp = res[name]["Properties"]
        found = {}
        for k, v in res.items():
            p = v["Properties"]
            if v["Type"] == "AWS::CloudWatch::Alarm" and p.get("Namespace") == "AWS/Lambda" and p.get("Dimensions") == [{"Name": "FunctionName", "Value": ref(name)}]:
                check(p["MetricName"] not in found, f"{where}{name}: one alarm on its {p['MetricName']}")
                found[p["MetricName"]] = (k, v)
        check(sorted(found) == ["Duration", "Errors", "Throttles"], f"{where}{name}: alarms on its Errors, Throttles and Duration: {sorted(found)}")
        for metric, (k, v) in found.items():
            p = v["Properties"]
            check(v.get("Condition") == res[name].get("Condition") and p["Period"] == 300 and p["EvaluationPeriods"] == 1
                  and p["ComparisonOperator"] == "GreaterThanThreshold" and p["TreatMissingData"] == "notBreaching",
                  f"{where}{k}: {metric} above its threshold over 5 minutes, with its function")
        errors = found["Errors"][1]["Properties"]
        if name in batch_functions:
            check(errors["Statistic"] == "Sum" and 0 < errors["Threshold"] <= 5 and ("batch" in errors["AlarmDescription"] or "direct invoke" in errors["AlarmDescription"]),
                  f"{where}{name}: Errors above a small threshold, its description saying why (a failed backup retries: batches, direct invokes)")
        else:
            check(errors["Statistic"] == "Sum" and errors["Threshold"] == 0, f"{where}{name}: any error")
        throttles = found["Throttles"][1]["Properties"]
        check(throttles["Statistic"] == "Sum" and throttles["Threshold"] == 0, f"{where}{name}: any throttle")
        duration = found["Duration"][1]["Properties"]
        threshold, timeout = duration["Threshold"], fnp["Timeout"]
        if isinstance(timeout, int):
            ok = threshold == timeout * 800
        else:
            table, key, by = threshold["Fn::FindInMap"]
            values = tmpl["Mappings"][table][key]
            ok = by == timeout and sorted(values) == sorted(tmpl["Parameters"][timeout["Ref"]]["AllowedValues"]) \
                and all(values[t] == int(t) * 800 for t in values)
        check(ok and duration.get("ExtendedStatistic") == "p99" and "Statistic" not in duration,
              f"{where}{name}: Duration p99 above 80% of its Timeout ({timeout}), in milliseconds")
check_health_alarms(template, functions, "", {"BackupFunction"})
# The backup queue's oldest message: ten visibility timeouts, for every FunctionTimeout.
age = alarms["BackupQueueAgeAlarm"]["Properties"]
vis = template["Mappings"]["Visibility"]["Timeout"]
table, key, by = age["Threshold"]["Fn::FindInMap"]
ages = template["Mappings"][table][key]
check(age["Namespace"] == "AWS/SQS" and age["MetricName"] == "ApproximateAgeOfOldestMessage"
      and age["Dimensions"] == [{"Name": "QueueName", "Value": getatt("BackupQueue", "QueueName")}] and age["Statistic"] == "Maximum"
      and by == ref("FunctionTimeout") and sorted(ages) == sorted(vis) and all(ages[t] == 10 * vis[t] for t in vis)
      and queue["VisibilityTimeout"] == {"Fn::FindInMap": ["Visibility", "Timeout", ref("FunctionTimeout")]},
      "BackupQueueAgeAlarm: the oldest message above ten visibility timeouts (the same table's FunctionTimeout)")
# Permanent backup failures: BackupFailures with Kind=permanent, whatever the step (a Metrics Insights query).
pf = alarms["PermanentBackupFailuresAlarm"]["Properties"]
check(len(pf["Metrics"]) == 1 and pf["Metrics"][0]["ReturnData"] is True and pf["Metrics"][0]["Period"] == 300
      and insights(pf["Metrics"][0]["Expression"])[:2] == ("PortalBackup", "BackupFailures")
      and insights(pf["Metrics"][0]["Expression"])[3] == {"Stack": "${AWS::StackName}", "Service": "portal-backup", "Kind": "permanent"}
      and pf["Threshold"] == 0 and pf["ComparisonOperator"] == "GreaterThanThreshold" and pf["TreatMissingData"] == "notBreaching",
      "PermanentBackupFailuresAlarm: any BackupFailures with Kind=permanent, any step, in 5 minutes")
# Portal's 429: the failure code PORTAL_RATE_LIMITED of the backup function's "backup failed" lines.
rl = filters["PortalRateLimitedMetricFilter"]["Properties"]
entry_rs = (ROOT / "src/entry/mod.rs").read_text()
check(rl["LogGroupName"] == ref("BackupFunctionLogs")
      and rl["FilterPattern"] == '{ $.message = "backup failed" && $.code = "PORTAL_RATE_LIMITED" }'
      and rl["MetricTransformations"] == [{"MetricNamespace": STACK_NAMESPACE, "MetricName": "PortalRateLimited", "MetricValue": "1", "DefaultValue": 0}],
      "PortalRateLimitedMetricFilter: the backup function's failures with code PORTAL_RATE_LIMITED count 1 each")
check(re.search(r'code = failure\(err\)\.code,[^;]*"backup failed"', entry_rs, re.S) is not None
      and re.search(r'429 => f\(\s*\d+,\s*"PORTAL_RATE_LIMITED"', entry_rs) is not None,
      "src/entry/mod.rs logs each failure as \"backup failed\" with its code, and Portal's 429 is PORTAL_RATE_LIMITED")
# The filter counts Portal's 429s only if nothing else is logged under that code: a call the stack's
# own budget held back (PortalError::Held) is not a 429, is counted by PortalRateHeld and must log
# a code of its own, else PortalRateLimitedAlarm fires on every backlog the limiter paces.
check(len(re.findall(r'\bf\(\s*\d+,\s*"PORTAL_RATE_LIMITED"', entry_rs)) == 1,
      "PORTAL_RATE_LIMITED is Portal's 429 alone in src/entry/mod.rs (a call the stack's budget held back needs a code of its own)")
rla = any_over_zero("PortalRateLimitedAlarm", "PortalRateLimited", 300, dimensions=None, namespace=STACK_NAMESPACE)
check(all(p in " ".join(rla["AlarmDescription"].split()) for p in ["PortalMpcRatePerMinute", "PortalApiRatePerMinute", "another system"]),
      "PortalRateLimitedAlarm says what a 429 means with the limiter on: Portal's limit is below the parameters, or another system shares the budget")
# A backlog larger than the stack's Portal budget: calls held back (either API) in every 5 minutes
# for half an hour. A capacity signal, to the alarm destination like the others.
held = alarms["PortalRateHeldAlarm"]["Properties"]
check(len(held["Metrics"]) == 1 and held["Metrics"][0]["ReturnData"] is True and held["Metrics"][0]["Period"] == 300
      and insights(held["Metrics"][0]["Expression"])[:3] == ("PortalBackup", "PortalRateHeld", ["Stack", "Service", "Api"])
      and insights(held["Metrics"][0]["Expression"])[3] == {"Stack": "${AWS::StackName}", "Service": "portal-backup"}
      and held["EvaluationPeriods"] == 6 and held["DatapointsToAlarm"] == 6 and held["Threshold"] == 0
      and held["ComparisonOperator"] == "GreaterThanThreshold" and held["TreatMissingData"] == "notBreaching"
      and held["AlarmActions"] == [ALARM_DESTINATION] and "Condition" not in alarms["PortalRateHeldAlarm"],
      "PortalRateHeldAlarm: PortalRateHeld of either API above 0 in 6 of 6 five-minute periods")
# The webhook API's 5xx, as API Gateway counts them on the stage (also what the function never answered).
wapi = R["WebhookApi"]["Properties"]
any_over_zero("WebhookServerErrorsAlarm", "5XXError", 300, namespace="AWS/ApiGateway",
              dimensions=[{"Name": "ApiName", "Value": wapi["Name"]}, {"Name": "Stage", "Value": wapi["StageName"]}])

# Saved Logs Insights queries: a client's history, failures by code, the operator audit, each on the
# log groups of the functions that write those lines.
direct_rs = (ROOT / "src/entry/direct.rs").read_text()
audit_lines = [l for l in direct_rs.splitlines() if "via = audit.via" in l]
check(".with_span_list(true)" in telemetry_rs and ".flatten_event(true)" in telemetry_rs
      and 'info_span!("message", message_id = %message_id, client_id = tracing::field::Empty)' in (ROOT / "src/entry/sqs.rs").read_text()
      and "client_id = %" in src_rs and not re.search(r"\bclientId\s*=\s*%", src_rs),
      "log lines name a client in a top-level client_id field, or in their message span's (spans, after the runtime's own span); none as clientId")
check(len(audit_lines) == 3 and all(re.search(r"\baction, client_id = %request\.client_id, via = audit\.via, caller, caller_source\b", l) for l in audit_lines),
      "src/entry/direct.rs: the audit lines carry action, client_id, via, caller and caller_source")
QUERIES = {
    "ClientHistoryQuery": ("client-history", ['filter client_id = "<client id>" or spans.1.client_id = "<client id>"']),
    "FailuresByCodeQuery": ("failures-by-code", ['filter message = "backup failed"', "stats count(*) as failures by code, step, kind"]),
    "OperatorAuditQuery": ("operator-audit", ["filter ispresent(via) and ispresent(action)", "fields @timestamp, action, client_id, via, caller"]),
}
def check_queries(tmpl, where, logs_of, condition=None):
    """`logs_of`: query -> the functions whose log groups it reads."""
    res = tmpl["Resources"]
    qs = {k: v for k, v in res.items() if v["Type"] == "AWS::Logs::QueryDefinition"}
    check(sorted(qs) == sorted(QUERIES), f"{where}the saved queries: {sorted(qs)}")
    for k, v in qs.items():
        p = v["Properties"]
        slug, needles = QUERIES[k]
        groups = [g.get("Ref") for g in p["LogGroupNames"]]
        want = [res[f]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in logs_of[k]]
        check(all(res.get(g, {}).get("Type") == "AWS::Logs::LogGroup" for g in groups) and groups == want,
              f"{where}{k}: the log groups of {logs_of[k]}: {groups}")
        check(p["Name"] == {"Fn::Sub": "${AWS::StackName}/" + slug} and v.get("Condition") == condition
              and all(n in p["QueryString"] for n in needles), f"{where}{k}: <stack name>/{slug}, on the fields the code logs")
    return {k: v["Properties"]["QueryString"] for k, v in qs.items()}
primary_queries = check_queries(template, "", {"ClientHistoryQuery": ["BackupFunction", "OperatorFunction", "CustodyFunction"],
                                               "FailuresByCodeQuery": ["BackupFunction", "OperatorFunction"],
                                               "OperatorAuditQuery": ["OperatorFunction"]})
check(all(f"/{QUERIES[k][0]}" in body_src for k in QUERIES), "the dashboard names the saved queries")

# Who may invoke which function: the SAM transform's Lambda permissions (the routes' and the
# stack's own), every IAM statement of the stack that grants lambda:InvokeFunction, and the event
# source mappings. No producer and no schedule reaches an operator action: the backup function has
# none (it refuses them by name), the operator function is invoked by the recovery role, the drill
# schedule's role and the operator routes only, and the schedule's payload is fixed.
def sam_transform(tmpl, region):
    import logging
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    t = json.loads(json.dumps(tmpl))
    for r in t["Resources"].values():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://bucket/key"  # as after `sam package`

    class NoManagedPolicies:
        def load(self):
            return {}
    return Translator(NoManagedPolicies(), Parser(), boto_session=boto3.session.Session(region_name=region)).translate(
        sam_template=t, parameter_values={})
def named(expr):
    if isinstance(expr, dict) and "Ref" in expr:
        return expr["Ref"]
    if isinstance(expr, dict) and "Fn::GetAtt" in expr:
        return expr["Fn::GetAtt"][0]
    return None
def invoke_map(cfn, where):
    res = cfn["Resources"]
    fns = sorted(k for k, v in res.items() if v["Type"] == "AWS::Lambda::Function")
    grants = {f: set() for f in fns}
    for k, v in res.items():
        p = v["Properties"]
        if v["Type"] == "AWS::Lambda::Permission":
            f = named(p["FunctionName"])
            check(f in grants and p["Action"] == "lambda:InvokeFunction", f"{where}{k}: lambda:InvokeFunction on a function of the stack")
            if p["Principal"] == "apigateway.amazonaws.com":
                sub, values = p["SourceArn"]["Fn::Sub"]
                check(sub.split(":")[-1].startswith("${__ApiId__}/${__Stage__}/"), f"{where}{k}: one route of one API")
                grants[f].add(("api", named(values["__ApiId__"]), sub.split("${__Stage__}/")[1]))
            else:
                check("SourceArn" not in p and "SourceAccount" not in p, f"{where}{k}: a principal, by name")
                grants[f].add(("principal", named(p["Principal"]) or p["Principal"], v.get("Condition")))
        elif v["Type"] == "AWS::Lambda::EventSourceMapping":
            grants[named(p["FunctionName"])].add(("queue", named(p["EventSourceArn"]), None))
        elif v["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs = [pol["PolicyDocument"] for pol in p.get("Policies", [])] if v["Type"] == "AWS::IAM::Role" else [p["PolicyDocument"]]
            for doc in docs:
                for st in unwrap(doc["Statement"]):
                    if st["Effect"] != "Allow" or not any(a == "*" or a.startswith("lambda:Invoke") or a == "lambda:*" for a in actions(st)):
                        continue
                    for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]):
                        check(named(r) in grants, f"{where}{k}/{st.get('Sid')}: lambda:InvokeFunction on a named function of the stack, never * ({r})")
                        grants[named(r)].add(("role", k, v.get("Condition")))
    return grants
cfn = sam_transform(template, "us-east-1")
invokers = invoke_map(cfn, "")
print("  invoke map: " + "; ".join(f"{f} <- {sorted(map(str, g))}" for f, g in sorted(invokers.items())))
check(invokers["BackupFunction"] == {("api", "BackupApi", "POST/backups"), ("queue", "BackupQueue", None)},
      "the backup function: POST /backups and the queue (and direct invoke by IAM policies of the deployer's producers)")
check(invokers["OperatorFunction"] == {("api", "BackupApi", "GET/clients/*/backups"), ("api", "BackupApi", "POST/clients/*/backups/verify"),
                                       ("api", "BackupApi", "POST/clients/*/backups/restore"), ("api", "BackupApi", "POST/clients/*/backups/recover"),
                                       ("principal", "RecoveryRoleArn", "HasRecoveryRole"), ("role", "DrillSchedulerRole", "HasDrillSchedule")},
      "the operator function: the operator routes, RecoveryRoleArn and the drill schedule's role, no one else")
check(invokers["CustodyFunction"] == {("api", "WebhookApi", "POST/webhook/backup"), ("api", "WebhookApi", "POST/webhook/backup/fetch"),
                                      ("role", "CustodyDrillSchedulerRole", "HasCustodyDrillSchedule")},
      "the custody function: the two webhook routes and its drill schedule's role only")
check(all("ProducerRole" not in str(g) and "RedriveRoleArn" not in str(g) and "WebhookSecretReaderRoleArn" not in str(g)
          for g in invokers.values()), "no producer, redrive or secret-reader role is given any function by the stack")
check(template["Conditions"]["HasRecoveryRole"] == {"Fn::Not": [{"Fn::Equals": [ref("RecoveryRoleArn"), ""]}]},
      "the recovery role's permission exists only when RecoveryRoleArn is set")

# Alarms that reach someone: AlarmTopicArn, or a topic of the stack's with AlarmEmail subscribed; a
# template rule refuses a stack with neither.
def evaluate(expr, params):
    """A CloudFormation rule expression over parameter values (the functions the templates use)."""
    if isinstance(expr, dict):
        (fn_name, arg), = expr.items()
        if fn_name == "Ref":
            return params[arg]
        if fn_name == "Fn::Equals":
            return evaluate(arg[0], params) == evaluate(arg[1], params)
        if fn_name == "Fn::Not":
            return not evaluate(arg[0], params)
        if fn_name == "Fn::Or":
            return any(evaluate(a, params) for a in arg)
        if fn_name == "Fn::And":
            return all(evaluate(a, params) for a in arg)
        if fn_name == "Fn::Contains":
            return evaluate(arg[1], params) in evaluate(arg[0], params)
        if fn_name == "Fn::EachMemberEquals":
            return all(m == evaluate(arg[1], params) for m in evaluate(arg[0], params))
        raise ValueError(f"a rule function this test does not know: {fn_name}")
    return expr
def refused(tmpl, params):
    """The rules' assertions that fail for these parameter values (None: the stack is accepted). A
    list parameter given as a string is split as CloudFormation splits it ("" is one empty value)."""
    params = {k: v.split(",") if isinstance(v, str) and tmpl["Parameters"][k]["Type"] == "CommaDelimitedList" else v
              for k, v in params.items()}
    out = []
    for name, rule in tmpl.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], params):
            continue
        out += [f"{name}: {a['AssertDescription']}" for a in rule["Assertions"] if not evaluate(a["Assert"], params)]
    return out or None
def defaults(params):
    return {k: str(v.get("Default", "")) for k, v in params.items()}
TOPIC = "arn:aws:sns:us-east-1:123456789012:ops-alarms"
def check_alarm_destination(tmpl, where, given=None):
    """`given`: what the template's other rules need besides an alarm destination."""
    res, par, cond = tmpl["Resources"], tmpl["Parameters"], tmpl["Conditions"]
    base = {**defaults(par), **(given or {})}
    check(par["AlarmTopicArn"]["Default"] == "" and par["AlarmEmail"]["Default"] == "", f"{where}AlarmTopicArn and AlarmEmail: empty by default")
    check(refused(tmpl, {**base, "AlarmTopicArn": "", "AlarmEmail": ""}) is not None
          and any(r.startswith("AlarmsReachSomeone") for r in refused(tmpl, {**base, "AlarmTopicArn": "", "AlarmEmail": ""})),
          f"{where}a stack with neither AlarmTopicArn nor AlarmEmail is refused (AlarmsReachSomeone)")
    check(refused(tmpl, {**base, "AlarmEmail": "ops@example.com"}) is None and refused(tmpl, {**base, "AlarmTopicArn": TOPIC}) is None,
          f"{where}either AlarmEmail or AlarmTopicArn is enough")
    check(re.fullmatch(par["AlarmEmail"]["AllowedPattern"], "ops@example.com") and not re.fullmatch(par["AlarmEmail"]["AllowedPattern"], "ops")
          and re.fullmatch(par["AlarmTopicArn"]["AllowedPattern"], TOPIC) and not re.fullmatch(par["AlarmTopicArn"]["AllowedPattern"], "ops"),
          f"{where}AlarmEmail is an address, AlarmTopicArn a topic ARN (or empty)")
    check(cond["CreateAlarmTopic"] == {"Fn::Equals": [ref("AlarmTopicArn"), ""]}
          and cond["HasAlarmTopic"] == {"Fn::Not": [cond["CreateAlarmTopic"]]}, f"{where}the stack's topic exactly when AlarmTopicArn is empty")
    topics = {k: v for k, v in res.items() if v["Type"] == "AWS::SNS::Topic"}
    check(list(topics) == ["AlarmTopic"] and topics["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
          and "KmsMasterKeyId" not in topics["AlarmTopic"]["Properties"],
          f"{where}the stack's topic: no SSE (CloudWatch and EventBridge cannot publish to a topic under alias/aws/sns)")
    subs = [v for v in res.values() if v["Type"] == "AWS::SNS::Subscription"]
    check(len(subs) == 1 and subs[0]["Condition"] == "CreateAlarmTopic" and subs[0]["Properties"] == {
              "TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": ref("AlarmEmail")}, f"{where}AlarmEmail is subscribed to it")
    pols = [v for v in res.values() if v["Type"] == "AWS::SNS::TopicPolicy"]
    check(len(pols) == 1 and pols[0]["Condition"] == "CreateAlarmTopic" and pols[0]["Properties"]["Topics"] == [ref("AlarmTopic")],
          f"{where}the topic has a policy")
    allows = [st for st in pols[0]["Properties"]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    check(len(allows) == 1 and sorted(allows[0]["Principal"]["Service"]) == ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
          and actions(allows[0]) == ["sns:Publish"] and allows[0]["Resource"] == ref("AlarmTopic")
          and allows[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}},
          f"{where}CloudWatch and EventBridge of this account may publish to it, no one else is allowed anything")
    for k, v in res.items():
        if v["Type"] == "AWS::CloudWatch::Alarm":
            check(v["Properties"]["AlarmActions"] == [ALARM_DESTINATION] and v["Properties"].get("AlarmDescription"),
                  f"{where}{k}: notifies the alarm destination, and says what it means")
        if v["Type"] == "AWS::Events::Rule":
            check(v["Properties"]["Targets"] == [{"Id": "alarm-topic", "Arn": ALARM_DESTINATION}], f"{where}{k}: its events go to the alarm destination")
    check(tmpl["Outputs"]["AlarmDestinationArn"]["Value"] == ALARM_DESTINATION, f"{where}output AlarmDestinationArn")
PRODUCERS = "arn:aws:iam::123456789012:role/producer,arn:aws:iam::210987654321:root"
check_alarm_destination(template, "", {"ProducerPrincipals": PRODUCERS})
check(refused(template, defaults(P)) is not None, "the template's defaults alone are refused: a deployer must say where alarms go")
# A producer must be able to seal and send: the stack refuses to be created without one (its own
# ProducerRoleArn, or ProducerPrincipals for a role the stack creates), and refuses both at once.
pbase = {**defaults(P), "AlarmEmail": "ops@example.com"}
for value in ["", []]:
    none = refused(template, {**pbase, "ProducerRoleArn": "", "ProducerPrincipals": value})
    check(none is not None and len(none) == 1 and none[0].startswith("ProducerCanSend: Give ProducerPrincipals")
          and "ProducerRoleArn" in none[0], f"a stack with neither ProducerRoleArn nor ProducerPrincipals ({value!r}) is refused, saying what to give")
check(refused(template, {**pbase, "ProducerPrincipals": PRODUCERS}) is None, "ProducerPrincipals alone is accepted (the stack creates the role)")
check(refused(template, {**pbase, "ProducerRoleArn": "arn:aws:iam::123456789012:role/a"}) is None, "ProducerRoleArn alone is accepted (the named-role path)")
both = refused(template, {**pbase, "ProducerRoleArn": "arn:aws:iam::123456789012:role/a", "ProducerPrincipals": PRODUCERS})
check(both is not None and len(both) == 1 and both[0].startswith("ProducerCanSend: Give ProducerRoleArn or ProducerPrincipals, not both"),
      "ProducerRoleArn and ProducerPrincipals together are refused (the principals would be ignored)")
check(refused(template, {**pbase, "ProducerPrincipals": PRODUCERS + ","}) is not None, "an empty member of ProducerPrincipals is refused")
def condition(name, params):
    """A condition of template.yaml over parameter values (lists as CloudFormation splits them)."""
    def ev(expr):
        if isinstance(expr, dict):
            (fn_name, arg), = expr.items()
            if fn_name == "Condition":
                return ev(C[arg])
            if fn_name == "Fn::Join":
                return arg[0].join(ev(arg[1]))
            if fn_name == "Ref":
                v = params[arg]
                return v.split(",") if P[arg]["Type"] == "CommaDelimitedList" else v
            sub = {"Fn::Equals": lambda a: ev(a[0]) == ev(a[1]), "Fn::Not": lambda a: not ev(a[0]),
                   "Fn::And": lambda a: all(map(ev, a)), "Fn::Or": lambda a: any(map(ev, a))}
            return sub[fn_name](arg)
        return expr
    return ev(C[name])
for arn, principals, creates, producer in [("", PRODUCERS, True, True), ("arn:aws:iam::123456789012:role/a", "", False, True), ("", "", False, False)]:
    given = {"ProducerRoleArn": arn, "ProducerPrincipals": principals}
    check(condition("CreateProducerRole", given) is creates and condition("HasProducer", given) is producer,
          f"CreateProducerRole={creates}, HasProducer={producer} for {given}")
# Two people, two roles: the role that opens client halves never opens custodian ones.
ROLE_A, ROLE_B = "arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/b"
pbase = {**defaults(P), "AlarmEmail": "ops@example.com", "ProducerPrincipals": PRODUCERS}
same = refused(template, {**pbase, "RecoveryRoleArn": ROLE_A, "CustodyRecoveryRoleArn": ROLE_A})
check(same is not None and all(r.startswith("RecoveryRolesDiffer") for r in same),
      "one role named as both RecoveryRoleArn and CustodyRecoveryRoleArn is refused (RecoveryRolesDiffer)")
check(refused(template, {**pbase, "RecoveryRoleArn": ROLE_A, "CustodyRecoveryRoleArn": ROLE_B}) is None
      and refused(template, {**pbase, "CustodyRecoveryRoleArn": ROLE_A}) is None
      and refused(template, {**pbase, "RecoveryRoleArn": ROLE_A}) is None,
      "two different roles, or either one alone, are accepted")

# Lambda code signing, an option: a code signing config that refuses unsigned code, on every function.
csc = R["CodeSigningConfig"]
check(csc["Condition"] == "HasCodeSigning" and csc["Properties"]["AllowedPublishers"] == {"SigningProfileVersionArns": [ref("CodeSigningProfileVersionArn")]}
      and csc["Properties"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"},
      "code signing: only the profile's signed code, enforced at deployment")
check(template["Conditions"]["HasCodeSigning"] == {"Fn::Not": [{"Fn::Equals": [ref("CodeSigningProfileVersionArn"), ""]}]}
      and P["CodeSigningProfileVersionArn"]["Default"] == "", "code signing is off unless a signing profile is given")

# The optional audit trail: management events and the operator function's invokes, into a private,
# versioned, encrypted, retained bucket.
check(P["AuditTrail"]["AllowedValues"] == ["true", "false"] and P["AuditTrail"]["Default"] == "false"
      and template["Conditions"]["HasAuditTrail"] == {"Fn::Equals": [ref("AuditTrail"), "true"]}, "AuditTrail: off by default")
trails = of_type("AWS::CloudTrail::Trail")
check(list(trails) == ["AuditCloudTrail"], "one trail")
trail = trails["AuditCloudTrail"]
tp = trail["Properties"]
check(trail["Condition"] == "HasAuditTrail" and tp["IsLogging"] is True and tp["IsMultiRegionTrail"] is True
      and tp["IncludeGlobalServiceEvents"] is True and tp["EnableLogFileValidation"] is True,
      "the trail logs, in every region, global services included, with log file validation")
check(tp["EventSelectors"] == [{"ReadWriteType": "All", "IncludeManagementEvents": True,
                                "DataResources": [{"Type": "AWS::Lambda::Function", "Values": [getatt("OperatorFunction")]}]}],
      "the trail: every management event, and the operator function's invokes (data events)")
TRAIL_ARN = {"Fn::Sub": "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/${AWS::StackName}-audit"}
check(tp["TrailName"] == {"Fn::Sub": "${AWS::StackName}-audit"} and trail["DependsOn"] == "AuditTrailBucketPolicy"
      and tp["S3BucketName"] == ref("AuditTrailBucket"), "the trail writes to its bucket, once the bucket's policy lets it")
bucket = R["AuditTrailBucket"]
bp = bucket["Properties"]
check(bucket["Condition"] == "HasAuditTrail" and bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
      and bp["VersioningConfiguration"] == {"Status": "Enabled"}
      and bp["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
      and all(bp["PublicAccessBlockConfiguration"][k] is True for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"]),
      "the trail's bucket: retained, versioned, encrypted, public access blocked")
bstmts = R["AuditTrailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
ballow = [st for st in bstmts if st["Effect"] == "Allow"]
check(len(ballow) == 2 and all(st["Principal"] == {"Service": "cloudtrail.amazonaws.com"} for st in ballow)
      and sorted(a for st in ballow for a in actions(st)) == ["s3:GetBucketAcl", "s3:PutObject"]
      and all(st["Condition"]["StringEquals"]["aws:SourceArn"] == TRAIL_ARN for st in ballow),
      "the bucket lets CloudTrail, for this trail only, check it and write to it, no one else")
check(any(st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for st in bstmts),
      "the bucket refuses access that is not over TLS")

for out in ["QueueUrl", "ApiUrl", "TableName", "WebhookBaseUrl", "CustodyTableName", "CustodyKeyArn", "CustodyFunctionArn",
            "WebhookSecretArn", "WebhookSecretKeyArn", "OperatorFunctionArn", "ApiAccessLogGroup"]:
    check(out in template["Outputs"], f"output {out}")
check(template["Outputs"]["OperatorFunctionArn"]["Value"] == getatt("OperatorFunction"), "OperatorFunctionArn: the operator function")
check(template["Outputs"]["WebhookBaseUrl"]["Value"] == {"Fn::Sub": "https://${WebhookApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod/webhook"},
      "WebhookBaseUrl: the webhook REST API's prod stage")

# The second region's template: replica keys of the primary's two keys, retained, usable only
# under the same encryption-context conditions as the primaries.
second, _ = decode(str(ROOT / "template-secondary.yaml"))
SR = second["Resources"]
SP = second["Parameters"]
check(sorted(k for k, v in SR.items() if v["Type"] == "AWS::KMS::ReplicaKey") == ["BackupReplicaKey", "CustodyReplicaKey"],
      "template-secondary.yaml: a replica of each key")
for name, param in [("BackupReplicaKey", "BackupKeyArn"), ("CustodyReplicaKey", "CustodyKeyArn")]:
    rk = SR[name]
    check(rk["Properties"]["PrimaryKeyArn"] == ref(param) and rk["DeletionPolicy"] == "Retain", f"{name}: of {param}, retained")
    check("key/mrk-" in SP[param]["AllowedPattern"], f"{param}: a multi-Region key")
    stmts = unwrap(rk["Properties"]["KeyPolicy"]["Statement"])
    for st in stmts:
        acts = actions(st)
        if st["Effect"] == "Deny":
            check(st["Principal"] == {"AWS": "*"} and sorted(acts) == CRYPTO_USE, f"{name}/{st['Sid']}: a Deny of every cryptographic use")
            continue
        if any(a in acts for a in ("kms:Decrypt", "kms:GenerateDataKey")):
            check("kms:EncryptionContextKeys" in str(st.get("Condition")), f"{name}/{st['Sid']}: bound to the encryption context")
        check(st["Sid"] != "AccountAdministersButCannotUse" or not any(a in acts for a in CRYPTO), f"{name}: the account administers, never uses")
        if st["Sid"] != "AccountAdministersButCannotUse" and "kms:DescribeKey" in acts:
            # DescribeKey carries no encryption context: under the context condition it would always
            # be refused (a standby rotate could not resolve its current key).
            check(acts == ["kms:DescribeKey"] and "Condition" not in st, f"{name}/{st['Sid']}: DescribeKey alone, with no context condition")
        if name == "BackupReplicaKey" and any(is_crypto(a) for a in acts):
            check(backup_purposes_only(st), f"{name}/{st['Sid']}: only the backup purposes (or none), as the primary")
    denies = [st["Condition"] for st in stmts if st["Effect"] == "Deny"]
    check(denies == ([NEVER_CUSTODIAN] if name == "BackupReplicaKey" else [CUSTODIAN_ONLY]),
          f"{name}: the same purpose Deny as its primary")
replica_stmts = unwrap(SR["BackupReplicaKey"]["Properties"]["KeyPolicy"]["Statement"])
backup_ctx = next(st for st in replica_stmts if st["Sid"] == "BackupRoleSealsAndOpensBackupShares")
check(sorted(backup_ctx["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]) == sorted(context_keys),
      "the replica's condition names the keys the code sends, as the primary's does")
describers = sorted(str(st["Principal"]["AWS"]) for st in replica_stmts if actions(st) == ["kms:DescribeKey"])
users = sorted(str(st["Principal"]["AWS"]) for st in replica_stmts
               if st["Effect"] == "Allow" and "kms:GenerateDataKey" in actions(st))
check(describers == users and len(users) == 3,
      f"every role that seals with the backup replica key may describe it (a statement of its own): {users}")

# The second region under the primary's rules: role ARNs only, and three different roles.
for param in ["BackupRoleArn", "CustodyRoleArn", "RecoveryRoleArn"]:
    check(SP[param]["Default"] == "" and SP[param]["AllowedPattern"] == P["RecoveryRoleArn"]["AllowedPattern"],
          f"template-secondary.yaml: {param} is a role ARN (or empty), as in the primary")
check(not any(k.endswith("RoleArn") and k not in ("BackupRoleArn", "CustodyRoleArn", "RecoveryRoleArn") for k in SP),
      "no other role parameter in the second region")
sbase = {**defaults(SP), "AlarmEmail": "ops@example.com"}
ROLE_A, ROLE_B, ROLE_C = (f"arn:aws:iam::123456789012:role/{n}" for n in "abc")
check(refused(second, sbase) is None, "template-secondary.yaml: no roles named is accepted")
check(refused(second, {**sbase, "BackupRoleArn": ROLE_A, "CustodyRoleArn": ROLE_B, "RecoveryRoleArn": ROLE_C}) is None,
      "template-secondary.yaml: three different roles are accepted")
for x, y in [("BackupRoleArn", "CustodyRoleArn"), ("BackupRoleArn", "RecoveryRoleArn"), ("CustodyRoleArn", "RecoveryRoleArn")]:
    both = {**sbase, x: ROLE_A, y: ROLE_A}
    check(refused(second, both) is not None and all(r.startswith("RolesDiffer") for r in refused(second, both)),
          f"template-secondary.yaml: one role named as both {x} and {y} is refused (RolesDiffer)")
    check(re.fullmatch(SP[x]["AllowedPattern"], "*") is None, f"template-secondary.yaml: {x} cannot be *")
check_alarm_destination(second, "template-secondary.yaml: ")

# The standby functions (DeployStandby=true): the primary's binary over the replicas here, split as
# in the primary (backups, and operator actions); their roles reach only the replica table, the
# replica key's policy names them under the same context condition.
check(SP["DeployStandby"]["Default"] == "false", "no standby function unless asked")
check(second["Rules"]["StandbyNeedsTheTable"]["RuleCondition"] == {"Fn::Equals": [ref("DeployStandby"), "true"]},
      "a standby function needs the table's name (a rule, checked before anything is created)")
sfunctions = {k: v for k, v in SR.items() if v["Type"] == "AWS::Serverless::Function"}
check(sorted(sfunctions) == ["StandbyFunction", "StandbyOperatorFunction"], "two standby functions: backups and operator actions")
check_tracing(second, list(sfunctions), "template-secondary.yaml: ")
check(SP["Tracing"] == {**P["Tracing"], "Description": SP["Tracing"]["Description"]}, "template-secondary.yaml: Tracing as in the primary")
for name, primary, role in [("StandbyFunction", "BackupFunction", "backup"), ("StandbyOperatorFunction", "OperatorFunction", "operator")]:
    sf = sfunctions[name]
    sp = sf["Properties"]
    senv = sp["Environment"]["Variables"]
    penv = functions[primary]["Properties"]["Environment"]["Variables"]
    check(sf["Condition"] == "HasStandby", f"{name} exists only when asked")
    check(senv["KMS_KEY_ID"] == getatt("BackupReplicaKey") and senv["BACKUP_TABLE_NAME"] == ref("TableName")
          and senv["FUNCTION_ROLE"] == role, f"{name}: FUNCTION_ROLE={role}, the replica key, the table's replica")
    check(senv["RETIRED_KMS_KEY_IDS"] == "", f"{name} opens messages under its replica key only (no retired keys)")
    check(all(var not in senv for var in ["WEBHOOK_SECRET", "ALLOW_PLAINTEXT_WEBHOOK_SECRET"]), f"{name} has no plaintext webhook secret")
    check(set(senv) <= set(penv), f"{name} sets only variables the primary's {primary} sets: {sorted(set(senv) - set(penv))}")
    check("Events" not in sp and sf["Metadata"] == functions[primary]["Metadata"] and sp["CodeUri"] == fp["CodeUri"],
          f"{name} is the same binary, with no trigger")
    check(sp["FunctionName"] == functions[primary]["Properties"]["FunctionName"] and sp["Role"] == getatt(f"{name}Role"),
          f"{name}: named as the primary's, its own role")
    logs = SR[sp["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
    check(logs["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-" + role}, f"{name}: a log group of its own")
    srole = SR[f"{name}Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    ptable = next(st for pol in R[f"{primary}Role"]["Properties"]["Policies"] for st in unwrap(pol["PolicyDocument"]["Statement"])
                  if st["Sid"] == "BackupTableItems")
    check(len(srole) == 3 and sorted(actions(srole[0])) == sorted(actions(ptable)) and "table/${TableName}" in srole[0]["Resource"]["Fn::Sub"]
          and srole[1] == {"Sid": "PortalRateLimiter", "Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": getatt("StandbyPortalRateTable")}
          and srole[2] == {"Fn::If": ["TracingOn", srole[2]["Fn::If"][1], ref("AWS::NoValue")]} and is_xray_grant(srole[2]["Fn::If"][1]),
          f"{name}'s role reaches the replica table, as the primary's {primary} reaches its table, and the standbys' Portal rate limiter (UpdateItem), nothing else (and, with Tracing=On, puts its traces)")
    # The standbys keep a Portal budget of their own, in this region (they run only when the
    # primary region cannot): their own table, the primary's parameters.
    check(all(senv.get(k) == (ref("StandbyPortalRateTable") if k == "PORTAL_RATE_TABLE_NAME" else v) for k, v in PORTAL_RATE_VARS.items()),
          f"{name}: the standbys' limiter table and the three Portal budget parameters")
    sk = [st for st in replica_stmts if st.get("Principal", {}).get("AWS") == getatt(f"{name}Role") and "kms:Decrypt" in actions(st)]
    check(len(sk) == 1 and sorted(actions(sk[0])) == ["kms:Decrypt", "kms:GenerateDataKey"] and sk[0]["Condition"] == backup_ctx["Condition"],
          f"the replica key lets {name}'s role seal and open, under the backup context")
    check(senv.get("STACK_NAME") == ref("AWS::StackName"), f"{name}: STACK_NAME is the stack's name (its metrics carry it)")
    for var in senv:
        check(read_by_code(var), f"{name}: {var} is read by src/config.rs (or src/telemetry.rs)")
senv = sfunctions["StandbyFunction"]["Properties"]["Environment"]["Variables"]
osenv = sfunctions["StandbyOperatorFunction"]["Properties"]["Environment"]["Variables"]
check_rate_table(second, "StandbyPortalRateTable", "HasStandby", "template-secondary.yaml: ")
check(SR["StandbyPortalRateTable"]["Properties"] == R["PortalRateTable"]["Properties"],
      "template-secondary.yaml: the standbys' limiter table is the primary's, in this region")
check(sorted(k for k, v in SR.items() if v["Type"].startswith("AWS::DynamoDB::")) == ["StandbyPortalRateTable"],
      "template-secondary.yaml: no table but the standbys' limiter (the backup table's replica is the primary's global table)")
for param in ["PortalMpcRatePerMinute", "PortalApiRatePerMinute", "PortalRateMaxWaitSeconds"]:
    check({k: v for k, v in SP[param].items() if k != "Description"} == {k: v for k, v in P[param].items() if k != "Description"},
          f"template-secondary.yaml: {param} as in the primary")
rate_standby = [(k, st) for k, v in SR.items() if v["Type"] == "AWS::IAM::Role" for pol in v["Properties"].get("Policies", [])
                for st in unwrap(pol["PolicyDocument"]["Statement"]) if "StandbyPortalRateTable" in json.dumps(st)]
check(sorted(k for k, _ in rate_standby) == ["StandbyFunctionRole", "StandbyOperatorFunctionRole"],
      "template-secondary.yaml: only the two standby roles may update the standbys' limiter table")
check("BACKUP_QUEUE_URL" not in senv, "the standby backup function has no queue (direct invoke only): a held call answers its caller")
check(check_stack_alarms(second, "template-secondary.yaml: ") == 4, "template-secondary.yaml: four alarms on the stack's PortalBackup metrics")
check(senv["REQUIRE_SEALED_INPUT"] == "true" and osenv["ALLOW_PLAINTEXT_RESTORE"] == "false",
      "the standbys keep the safe defaults")
check(osenv["DRILL_SAMPLE"] == ref("DrillSample") and "BACKUP_QUEUE_URL" not in osenv,
      "the standby operator accepts the drill of its schedule's sample only (and has no queue to send to)")
check(not any("Standby" in st.get("Sid", "") for st in unwrap(SR["CustodyReplicaKey"]["Properties"]["KeyPolicy"]["Statement"])),
      "the standbys never reach the custody key")
ssched = SR["RestoreDrillSchedule"]
check(ssched["Condition"] == "HasStandbyDrills" and ssched["Properties"]["Target"]["Arn"] == getatt("StandbyOperatorFunction")
      and json.loads(ssched["Properties"]["Target"]["Input"]["Fn::Sub"].replace("${DrillSample}", "20")) == {"action": "drill", "sample": 20},
      "the standby operator drills on its own schedule, with the drill payload")
check(ssched["Properties"]["GroupName"] == ref("DrillScheduleGroup") and ssched["Properties"]["Name"] == sched["Properties"]["Name"]
      and SR["DrillScheduleGroup"]["Properties"] == groups["DrillScheduleGroup"]["Properties"]
      and SR["DrillSchedulerRole"]["Properties"]["AssumeRolePolicyDocument"] == drill_role["Properties"]["AssumeRolePolicyDocument"],
      "the standby's schedule: a group of its own, named in its role's trust policy, as in the primary")
sinvokers = invoke_map(sam_transform(second, "eu-west-1"), "template-secondary.yaml: ")
check(sinvokers == {"StandbyFunction": set(),
                    "StandbyOperatorFunction": {("principal", "RecoveryRoleArn", "HasStandbyRecovery"), ("role", "DrillSchedulerRole", "HasStandbyDrills")}},
      f"template-secondary.yaml: the standby operator is invoked by RecoveryRoleArn and its drill schedule only; the stack lets no one invoke the standby backup function: {sinvokers}")
check_change_rule(second, "StackChangeRule", ["StandbyFunction", "StandbyOperatorFunction"],
                  [ref("StandbyFunctionRole"), ref("StandbyOperatorFunctionRole"),
                   {"Fn::If": ["HasStandbyDrills", ref("DrillSchedulerRole"), ref("AWS::NoValue")]}], "template-secondary.yaml: ")
check(sorted(k for k, v in SR.items() if v["Type"] == "AWS::IAM::Role") == ["DrillSchedulerRole", "StandbyFunctionRole", "StandbyOperatorFunctionRole"],
      "template-secondary.yaml: the change rule names every role of the stack")
srule = SR["KeyPolicyChangeRule"]["Properties"]["EventPattern"]
check(srule["source"] == ["aws.kms"] and sorted(srule["detail"]["eventName"]) == sorted(rule["detail"]["eventName"])
      and srule["detail"]["resources"]["ARN"] == [getatt("BackupReplicaKey"), getatt("CustodyReplicaKey")],
      "template-secondary.yaml: the replica keys watched as the primary's keys are")
salarms = {k: v for k, v in SR.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
check(sorted(a["Properties"]["MetricName"] for a in salarms.values())
      == ["DrillFailures", "DrillKeyMismatches", "DrillsVerified", "Duration", "Duration", "Errors", "Errors", "Restores",
          "Throttles", "Throttles", "TriggeredRules", "TriggeredRules"],
      "the second region alarms on drill failures, key mismatches and silence, restores, both change rules, and each standby function's errors, throttles and duration")
check(salarms["DrillKeyMismatchAlarm"].get("Condition") == salarms["DrillFailuresAlarm"].get("Condition") == "HasStandby"
      and {k: v for k, v in salarms["DrillKeyMismatchAlarm"]["Properties"].items() if k != "AlarmDescription"}
      == {k: v for k, v in alarms["DrillKeyMismatchAlarm"]["Properties"].items() if k != "AlarmDescription"},
      "template-secondary.yaml: DrillKeyMismatchAlarm with the standby, as the primary's")
check(salarms["RestoresAlarm"]["Condition"] == "HasStandby"
      and {k: v for k, v in salarms["RestoresAlarm"]["Properties"].items() if k != "AlarmDescription"}
      == {k: v for k, v in alarms["RestoresAlarm"]["Properties"].items() if k != "AlarmDescription"},
      "template-secondary.yaml: RestoresAlarm with the standby, as the primary's")
check_alarm_metrics(second, "template-secondary.yaml: ")
check_health_alarms(second, sfunctions, "template-secondary.yaml: ", {"StandbyFunction"})
secondary_queries = check_queries(second, "template-secondary.yaml: ", {"ClientHistoryQuery": ["StandbyFunction", "StandbyOperatorFunction"],
                                                                        "FailuresByCodeQuery": ["StandbyFunction", "StandbyOperatorFunction"],
                                                                        "OperatorAuditQuery": ["StandbyOperatorFunction"]}, condition="HasStandby")
check(secondary_queries == primary_queries, "template-secondary.yaml: the saved queries are the primary's, on the standbys' log groups")
check(second["Outputs"]["StandbyFunctionArn"]["Condition"] == "HasStandby" and second["Outputs"]["StandbyOperatorFunctionArn"]["Condition"] == "HasStandby",
      "outputs StandbyFunctionArn and StandbyOperatorFunctionArn")

# Every alarm of both templates has its runbook entry in docs/operations.md, and every section an alarm's
# description points to ("docs/operations.md, \"…\"") is a heading there.
operations_md = (ROOT / "docs/operations.md").read_text()
headings = {re.sub(r"[`*]", "", h).strip() for h in re.findall(r"^#{2,4} (.+)$", operations_md, re.M)}
for where, tmpl in [("", template), ("template-secondary.yaml: ", second)]:
    for k, v in tmpl["Resources"].items():
        if v["Type"] != "AWS::CloudWatch::Alarm":
            continue
        check(f"`{k}`" in operations_md, f"{where}{k}: named in docs/operations.md (its runbook entry)")
        for section in re.findall(r'docs/operations\.md, "([^"]+)"', " ".join(v["Properties"]["AlarmDescription"].split())):
            check(section in headings, f"{where}{k}: docs/operations.md has the section it points to, \"{section}\"")

check("Tracing" in headings, "docs/operations.md has a Tracing section (samconfig.toml points to it)")

# samconfig.toml lists every parameter at the template's default (so a deploy never silently
# turns a safety default off).
import tomllib
sam = tomllib.loads((ROOT / "samconfig.toml").read_text())
overrides = dict(o.split("=", 1) for o in sam["default"]["deploy"]["parameters"]["parameter_overrides"])
check(sorted(overrides) == sorted(P), f"samconfig.toml lists every template parameter: {sorted(set(P) ^ set(overrides))}")
for name, value in overrides.items():
    default = str(P[name].get("Default", ""))
    check(value.strip('"') == default, f"samconfig.toml: {name}={value} is the template's default ({default!r})")
# A deploy with samconfig.toml as it is, its alarm destination given, is refused for want of a
# producer (ProducerCanSend) rather than creating a stack that can take no backup; once
# ProducerPrincipals (or ProducerRoleArn) is filled in, it is accepted.
sam_params = {k: v.strip('"') for k, v in overrides.items()}
unedited = refused(template, {**sam_params, "AlarmEmail": "ops@example.com"})
check(unedited is not None and [r.split(":")[0] for r in unedited] == ["ProducerCanSend"],
      f"samconfig.toml's defaults are refused by ProducerCanSend until a producer is given: {unedited}")
check(refused(template, {**sam_params, "AlarmEmail": "ops@example.com", "ProducerPrincipals": PRODUCERS}) is None
      and refused(template, {**sam_params, "AlarmEmail": "ops@example.com", "ProducerRoleArn": "arn:aws:iam::123456789012:role/a"}) is None,
      "samconfig.toml with ProducerPrincipals (or ProducerRoleArn) and AlarmEmail filled in is accepted")
samconfig_text = (ROOT / "samconfig.toml").read_text()
check("ProducerCanSend" in samconfig_text and "ProducerPrincipals" in samconfig_text.split('"ProducerPrincipals=')[0],
      "samconfig.toml says, above ProducerPrincipals, what to put there and that the stack is refused until then")

print(f"template.yaml and template-secondary.yaml: {checks} checks passed")
