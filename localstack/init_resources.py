#!/usr/bin/env python3
"""Create docfleet's job queue, its dead-letter queue (redrive policy) and the input/output
buckets on LocalStack or AWS. Idempotent: running it again changes nothing.

Used by the tests (each test gets its own names), localstack/start.sh and docker compose.
Prints the queue URLs as JSON on stdout.
"""
import argparse
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--endpoint", default=env("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"))
    p.add_argument("--region", default=env("AWS_REGION", "us-east-1"))
    p.add_argument("--queue", default=env("DOCFLEET_QUEUE", "docfleet-jobs"))
    p.add_argument("--dlq", default=env("DOCFLEET_DLQ", "docfleet-jobs-dlq"))
    # 5 receives before dead-lettering (AWS's advice for SQS sources): a worker killed mid-batch
    # costs every message it held a receive, and 3 is too few to survive a few crashes.
    p.add_argument("--max-receive-count", type=int, default=int(env("DOCFLEET_MAX_RECEIVE_COUNT", "5")))
    p.add_argument("--visibility-timeout", type=int, default=int(env("DOCFLEET_VISIBILITY_TIMEOUT", "120")))
    p.add_argument("--input-bucket", default=env("DOCFLEET_INPUT_BUCKET", "docfleet-input"))
    p.add_argument("--output-bucket", default=env("DOCFLEET_OUTPUT_BUCKET", "docfleet-output"))
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for the endpoint to answer")
    return p.parse_args()


def settled(call, *args, **kwargs):
    """Run an API call, retrying while a freshly started LocalStack is still registering its
    handlers (it answers `InternalFailure: no handler for operation ...` for a moment on a cold
    first start). Bounded: about 30 s, then the error is raised."""
    for attempt in range(60):
        try:
            return call(*args, **kwargs)
        except ClientError as e:
            err = e.response.get("Error", {})
            warming = err.get("Code") == "InternalFailure" and "no handler" in err.get("Message", "")
            if not warming or attempt == 59:
                raise
            time.sleep(0.5)


def main() -> int:
    a = parse_args()
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=a.region,
    )
    cfg = Config(retries={"max_attempts": 3}, s3={"addressing_style": "path"})
    sqs = session.client("sqs", endpoint_url=a.endpoint, config=cfg)
    s3 = session.client("s3", endpoint_url=a.endpoint, config=cfg)

    deadline = time.monotonic() + a.wait
    while True:
        try:
            sqs.list_queues(MaxResults=1)
            break
        except EndpointConnectionError:
            if time.monotonic() >= deadline:
                print(f"init_resources: {a.endpoint} is not answering", file=sys.stderr)
                return 1
            time.sleep(0.5)

    dlq_url = settled(sqs.create_queue, QueueName=a.dlq, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=a.queue)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": str(a.visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(a.max_receive_count)}),
        },
    )
    for bucket in (a.input_bucket, a.output_bucket):
        try:
            settled(s3.create_bucket, Bucket=bucket)
        except ClientError as e:
            if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    print(json.dumps({"queue_url": queue_url, "dlq_url": dlq_url, "dlq_arn": dlq_arn,
                      "buckets": [a.input_bucket, a.output_bucket]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
