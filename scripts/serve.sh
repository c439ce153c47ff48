#!/usr/bin/env bash
# Start the registry (defaults: 127.0.0.1:5000, storage in ./data). The first run installs trustreg into
# .venv (editable, so code changes need no reinstall); later runs start at once, reinstalling only when
# pyproject.toml changed. Needs python3 with venv (Debian: apt-get install python3 python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
STAMP=.venv/.trustreg-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/trustreg ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "[serve.sh] installing trustreg into .venv (first run only)" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[fast]'
  echo "$want" >"$STAMP"
fi
exec .venv/bin/trustreg serve "$@"
