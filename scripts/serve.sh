#!/usr/bin/env bash
# Install trustreg into .venv and start the registry (defaults: 127.0.0.1:5000, storage in ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[fast]'
exec .venv/bin/trustreg serve "$@"
