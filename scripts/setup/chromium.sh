#!/usr/bin/env bash
# Debian's headless Chromium for the tests that render `docfleet run --report` in a real browser
# (tests/cli.rs). Installs the `chromium` package with apt-get when it is missing (root, or sudo
# without a password); Debian's package registry is the only source.
# Prints the browser's path on stdout (export it as DOCFLEET_CHROMIUM).
set -euo pipefail
for candidate in "${DOCFLEET_CHROMIUM:-}" chromium chromium-browser; do
  if [[ -n "$candidate" ]] && path=$(command -v "$candidate"); then echo "$path"; exit 0; fi
done
as_root=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || {
    echo "chromium.sh: Chromium is missing and apt-get needs root: install Debian's 'chromium' package" >&2; exit 1; }
  as_root=(sudo -n)
fi
echo "installing Debian's chromium ..." >&2
"${as_root[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
