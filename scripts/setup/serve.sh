#!/usr/bin/env bash
# Install `transformers serve` (an OpenAI-compatible server; pinned in
# scripts/setup/serve-requirements.txt) into a virtualenv on CPU, reusing it when it is complete.
# Used by the vlm pipeline's `openai` engine tests (tests/openai.rs) and benchmark.
#   scripts/setup/serve.sh [VENV_DIR]   (default: ${DOCFLEET_CACHE:-~/.cache/docfleet}/serve-venv)
# Prints the venv's python path on stdout (export it as DOCFLEET_SERVE_PYTHON).
#
# torch is the big part: PyPI's Linux wheel pulls ~3 GB of CUDA libraries. When a venv with the
# same torch already exists (DOCFLEET_SERVE_TORCH_FROM, a site-packages directory; default the
# vlm fixtures' venv, ${cache}/vlm-venv) it is shared through a .pth file instead of installed
# again; otherwise torch comes from the CPU-only index when it is reachable
# (DOCFLEET_TORCH_INDEX, default https://download.pytorch.org/whl/cpu), else from PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${DOCFLEET_CACHE:-$HOME/.cache/docfleet}
venv=${1:-$cache/serve-venv}
stamp="$venv/.docfleet-requirements"
reqs="$here/serve-requirements.txt"
torch_version=$(sed -n 's/^torch==//p' "$reqs")

# A site-packages holding the pinned torch, to share.
torch_from=${DOCFLEET_SERVE_TORCH_FROM:-}
if [[ -z "$torch_from" ]]; then
  for sp in "$cache"/vlm-venv/lib/python3*/site-packages; do
    if compgen -G "$sp/torch-$torch_version*.dist-info" >/dev/null; then
      torch_from=$sp
    fi
  done
fi
expected=$(cat "$reqs"; if [[ -n "$torch_from" ]]; then echo "# torch from: $torch_from"; fi)
if [[ -x "$venv/bin/python" ]] && [[ "$(cat "$stamp" 2>/dev/null)" == "$expected" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

python=${DOCFLEET_PYTHON311:-}
if [[ -z "$python" ]]; then
  if [[ -n "$torch_from" ]]; then
    # The venv must use the Python the shared torch was built for.
    base=$(dirname "$(dirname "$(dirname "$torch_from")")")
    python="$base/bin/python"
  else
    for candidate in python3.11 python3.12 python3.13 python3; do
      if "$candidate" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 13)' 2>/dev/null; then python=$candidate; break; fi
    done
  fi
fi
[[ -n "$python" ]] || { echo "serve.sh: no Python 3.10-3.13 found (set DOCFLEET_PYTHON311)" >&2; exit 1; }
echo "installing transformers serve into $venv ..." >&2
started=$(date +%s)
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
if [[ -n "$torch_from" ]]; then
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$torch_from" > "$site/docfleet-reused-torch.pth"
  "${pip[@]}" -r "$reqs" >&2
else
  index=${DOCFLEET_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
  if ! "${pip[@]}" --index-url "$index" "torch==$torch_version" "$(grep '^torchvision==' "$reqs")" >&2; then
    echo "serve.sh: $index not reachable; torch from PyPI (with its CUDA libraries)" >&2
  fi
  "${pip[@]}" -r "$reqs" >&2
fi
echo "$expected" > "$stamp"
echo "serve.sh: installed in $(( $(date +%s) - started )) s, $(du -sh "$venv" | cut -f1) (torch shared: ${torch_from:-no})" >&2
echo "$venv/bin/python"
