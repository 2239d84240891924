#!/usr/bin/env python3
"""The dead-letter queue runbook (docs/operations.md, "The dead-letter queue"), step by step, as
boto3 calls against moto.

A backup request that fails every receive reaches the DLQ (here after one receive: maxReceiveCount
1). The runbook then inspects the DLQ without taking the message out of it, and moves the message
back to the queue it came from: with a message move task (`start-message-move-task`), or, where
that is not available, with the runbook's other way: receive from the DLQ, send the body to the
queue, delete it from the DLQ. moto (5.x) has no StartMessageMoveTask; the test says which way it
took. Either way the message must be back in the queue, once, with the same body, and the DLQ empty.

Both queues are SSE-KMS under a key of their own, as in the stack (moto does not enforce the key
policy: the redrive role's kms:GenerateDataKey and kms:Decrypt through SQS are checked by
tests/template_test.py). Nothing this test prints carries a message body.

usage: .venv/bin/python tests/redrive_test.py   (starts its own moto server on a free port; a few
seconds; exits non-zero on the first failed step, naming it)
"""
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# A body shaped as a sealed backup request; the token stands for what a real one must never leak.
TOKEN = secrets.token_hex(16)
BODY = json.dumps({"clientId": "cm-redrive-test", "sealedGenerateResponse": f"AYADe{TOKEN}"})
steps = 0


def say(text):
    """Prints a line of the test's own; never one that carries the body."""
    assert TOKEN not in text and BODY not in text, "a message body in the output"
    print(text, flush=True)


def check(cond, what):
    global steps
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr, flush=True)
        sys.exit(1)
    steps += 1


def start_moto():
    """moto as the project serves it (scripts/moto-server.py): loopback, a port the OS picks."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/moto-server.py"), "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        print(f"FAIL: moto did not start (its first line: {line!r})", file=sys.stderr)
        sys.exit(1)
    return proc, int(line)


def visible(sqs, url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                    "ApproximateNumberOfMessagesNotVisible"])
    a = attrs["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def timed_out(signum, frame):
    raise TimeoutError("the redrive test took more than 60 s")


def main():
    # A hung server or call fails the test instead of hanging it (and still stops moto).
    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(60)
    proc, port = start_moto()
    try:
        run(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    say(f"redrive runbook: {steps} steps passed")


def run(endpoint):
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=REGION)
    # No retries: moto answers at once, and an operation it lacks must fail once, not four times.
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    sqs = session.client("sqs", endpoint_url=endpoint, config=config)
    kms = session.client("kms", endpoint_url=endpoint, config=config)

    # The stack's two queues, as template.yaml makes them (a test's own names).
    key = kms.create_key(Description="redrive test: the queue key")["KeyMetadata"]["KeyId"]
    dlq_url = sqs.create_queue(QueueName="redrive-test-backup-dlq",
                               Attributes={"KmsMasterKeyId": key, "MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName="redrive-test-backup-requests", Attributes={
        "KmsMasterKeyId": key, "VisibilityTimeout": "360",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    # A request that fails: received and never deleted. Its first receive is the one allowed, the
    # next finds it gone to the DLQ.
    sent = sqs.send_message(QueueUrl=queue_url, MessageBody=BODY)["MessageId"]
    first = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0, MaxNumberOfMessages=1,
                                AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    check(len(first) == 1 and first[0]["MessageId"] == sent, "the request is received once from the queue")
    second = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0, MaxNumberOfMessages=1).get("Messages", [])
    check(second == [], "after maxReceiveCount receives the request is no longer in the queue")
    check(visible(sqs, dlq_url) == (1, 0), "the request is in the DLQ")
    say("the failed request reached the DLQ")

    # Runbook, inspect: receive with a visibility timeout of 0, so that the message stays in place
    # for the redrive; read its attributes and its size, never print its body.
    looked = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                 AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                                 MessageAttributeNames=["All"]).get("Messages", [])
    check(len(looked) == 1 and looked[0]["Body"] == BODY, "the DLQ's message is the request, body unchanged")
    say(f"inspected: 1 message, {len(looked[0]['Body'])} bytes, "
        f"received {looked[0]['Attributes']['ApproximateReceiveCount']} time(s) in all")
    check(visible(sqs, dlq_url) == (1, 0), "inspecting leaves the message in the DLQ, visible")

    # Runbook, redrive: a message move task from the DLQ to the queue it came from.
    try:
        task = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=queue_arn)
        way = "start-message-move-task"
        deadline = time.monotonic() + 20
        while True:
            tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
            mine = [t for t in tasks if t.get("TaskHandle") == task["TaskHandle"]]
            if mine and mine[0]["Status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            check(time.monotonic() < deadline, "the move task ends within 20 s")
            time.sleep(0.2)
        check(mine[0]["Status"] == "COMPLETED" and mine[0].get("ApproximateNumberOfMessagesMoved") == 1,
              f"the move task completed, one message moved: {mine[0].get('Status')}")
    except ClientError as e:
        # moto answers an operation it does not implement with an error: the runbook's other way.
        say(f"start-message-move-task not available here ({e.response['Error'].get('Code') or 'error'}): "
            "receive, send, delete")
        way = "receive, send, delete"
        while True:
            got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=60,
                                      MessageAttributeNames=["All"]).get("Messages", [])
            if not got:
                break
            msg = got[0]
            sqs.send_message(QueueUrl=queue_url, MessageBody=msg["Body"])
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=msg["ReceiptHandle"])
    say(f"redriven with {way}")

    # The request is back in the queue, once, as it was; the DLQ is empty.
    check(visible(sqs, dlq_url) == (0, 0), "the DLQ is empty")
    back = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
    check(len(back) == 1 and back[0]["Body"] == BODY, "the request is back in the queue, once, with the same body")
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=back[0]["ReceiptHandle"])
    check(visible(sqs, queue_url) == (0, 0), "nothing else is in the queue")


if __name__ == "__main__":
    os.environ.pop("AWS_PROFILE", None)
    main()
