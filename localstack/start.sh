#!/usr/bin/env bash
# Run LocalStack (SQS + S3) in the foreground on 127.0.0.1:${PORT:-4566} and create docfleet's
# queue, DLQ and buckets once it is ready. For manual use with the aws-mock profile; the tests
# start their own instance on a free port.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$("$here/install.sh")
port=${PORT:-4566}
export GATEWAY_LISTEN=127.0.0.1:$port LOCALSTACK_HOST=127.0.0.1:$port SERVICES=sqs,s3 EAGER_SERVICE_LOADING=1 \
  DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 SQS_ENDPOINT_STRATEGY=path DNS_ADDRESS=0
"$python" -m localstack.runtime.main &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
"$python" "$here/init_resources.py" --endpoint "http://127.0.0.1:$port" --wait 60
wait $pid
