#!/usr/bin/env bash
# Install Python huggingface_hub (pinned, scripts/setup/hfhub-requirements.txt) into a virtualenv,
# reusing it when it is already complete. Used by the downloader's interop tests and benchmark.
#   scripts/setup/hfhub.sh [VENV_DIR]   (default: ${DOCFLEET_CACHE:-~/.cache/docfleet}/hfhub-venv)
# Prints the venv's python path on stdout (export it as DOCFLEET_HFHUB_PYTHON).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DOCFLEET_CACHE:-$HOME/.cache/docfleet}
venv=${1:-$cache/hfhub-venv}
stamp="$venv/.docfleet-requirements"
python=${DOCFLEET_PYTHON313:-}
if [[ -z "$python" ]]; then
  for candidate in python3.13 /root/.pyenv/versions/3.13.0/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13 python3; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] >= (3, 9)' 2>/dev/null; then python=$candidate; break; fi
  done
fi
if [[ -x "$venv/bin/python" ]] && cmp -s "$here/hfhub-requirements.txt" "$stamp"; then
  echo "$venv/bin/python"
  exit 0
fi
[[ -n "$python" ]] || { echo "hfhub.sh: no Python >= 3.9 found (set DOCFLEET_PYTHON313)" >&2; exit 1; }
echo "installing huggingface_hub into $venv ..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/hfhub-requirements.txt" >&2
cp "$here/hfhub-requirements.txt" "$stamp"
echo "$venv/bin/python"
