#!/usr/bin/env bash
# Run the whole trustreg test suite on a fresh Debian machine with Python 3.11.
# As root, installs the real clients the end-to-end tests drive (skopeo, notary, docker, containerd);
# without them those tests are skipped (or fail, with TRUSTREG_REQUIRE_E2E=1 as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="skopeo notary docker.io containerd runc busybox-static docker-registry wrk openssl python3-venv chromium podman"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=$(for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # cosign and notation are not in bookworm: unpacked from Debian's newer suites under /opt (never
  # installed system-wide); a failure is recorded there and the signature e2e tests skip with it.
  scripts/install-signing-tools.sh || true
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,fast]'
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
