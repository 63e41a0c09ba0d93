#!/usr/bin/env bash
# Validate the deployment files offline:
#   - render every kustomization under deploy/ with `kubectl kustomize`;
#   - every built-in object against the Kubernetes ${DOCFLEET_K8S_VERSION:-1.33.0} schemas
#     (kubernetes-validate --strict: unknown fields fail), KEDA objects against the schemas in
#     deploy/schemas/keda (check-jsonschema); any other kind fails (no schema, no pass);
#   - docker-compose.yml against the compose specification (check-jsonschema vendor.compose-spec);
#   - the Dockerfiles with hadolint (.hadolint.yaml).
# Tools are installed into ${DOCFLEET_CACHE:-~/.cache/docfleet}/deploy-venv, reused when present.
# Usage: scripts/validate_deploy.sh [--out DIR]   (DIR receives the rendered overlays)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${DOCFLEET_CACHE:-$HOME/.cache/docfleet}
venv=$cache/deploy-venv
stamp=$venv/.docfleet-requirements
if ! { [[ -x "$venv/bin/python" ]] && cmp -s scripts/validate_deploy.requirements.txt "$stamp"; }; then
  python=${DOCFLEET_PYTHON313:-}
  if [[ -z "$python" ]]; then
    for candidate in python3.13 /root/.pyenv/versions/3.13.0/bin/python3.13 /usr/local/bin/python3.13 python3; do
      if "$candidate" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then python=$candidate; break; fi
    done
  fi
  [[ -n "$python" ]] || { echo "validate_deploy: no python3 found (set DOCFLEET_PYTHON313)" >&2; exit 1; }
  echo "validate_deploy: installing validators into $venv ..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/validate_deploy.requirements.txt >&2
  cp scripts/validate_deploy.requirements.txt "$stamp"
fi
exec "$venv/bin/python" scripts/validate_deploy.py --venv "$venv" "$@"
