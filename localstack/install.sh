#!/usr/bin/env bash
# Install LocalStack into a virtualenv, reusing it when it is already complete.
#   localstack/install.sh [VENV_DIR]   (default: ${DOCFLEET_CACHE:-~/.cache/docfleet}/localstack-venv)
# Prints the venv's python path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DOCFLEET_CACHE:-$HOME/.cache/docfleet}
venv=${1:-$cache/localstack-venv}
stamp="$venv/.docfleet-requirements"
python=${DOCFLEET_PYTHON313:-}
if [[ -z "$python" ]]; then
  for candidate in python3.13 /root/.pyenv/versions/3.13.0/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then python=$candidate; break; fi
  done
fi
if [[ -x "$venv/bin/python" ]] && cmp -s "$here/requirements.txt" "$stamp"; then
  echo "$venv/bin/python"
  exit 0
fi
[[ -n "$python" ]] || { echo "install.sh: Python 3.13 not found (set DOCFLEET_PYTHON313)" >&2; exit 1; }
echo "installing LocalStack into $venv ..." >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
cp "$here/requirements.txt" "$stamp"
echo "$venv/bin/python"
