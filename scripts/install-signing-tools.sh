#!/usr/bin/env bash
# Install the real `cosign` and `notation` binaries (static Go programs, need only libc6 >= 2.34)
# from Debian's newer suites (sid; trixie as a fallback for cosign) WITHOUT touching the system's apt
# sources: a private apt configuration under DEST reuses the machine's configured Debian mirror,
# downloads the .debs and unpacks them with `dpkg -x`. Binaries end up in DEST/bin.
# The end-to-end signature tests look there (TRUSTREG_SIGNING_TOOLS, default /opt/trustreg-signing-tools).
# Usage: scripts/install-signing-tools.sh [DEST]
set -euo pipefail
DEST=${1:-${TRUSTREG_SIGNING_TOOLS:-/opt/trustreg-signing-tools}}
if [ -x "$DEST/bin/cosign" ] && [ -x "$DEST/bin/notation" ]; then
  exit 0
fi
mkdir -p "$DEST"
rm -f "$DEST/install-error"
trap 'echo "cosign/notation could not be installed from Debian sid/trixie (scripts/install-signing-tools.sh failed at line $LINENO: $BASH_COMMAND)" > "$DEST/install-error"' ERR
URI=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$URI" ] && [ -f /etc/apt/sources.list ]; then
  URI=$(awk '/^deb /{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
URI=${URI:-http://deb.debian.org/debian}
APT="$DEST/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$DEST/debs" "$DEST/bin"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
  "$URI" sid "$URI" trixie > "$APT/sources.list"
APTO=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${APTO[@]}" -qq update
cd "$DEST/debs"
for pkg in cosign notation; do
  apt-get "${APTO[@]}" -qq download "$pkg"
done
for deb in *.deb; do
  name=${deb%%_*}
  rm -rf "$DEST/pkg/$name"
  mkdir -p "$DEST/pkg/$name"
  dpkg -x "$deb" "$DEST/pkg/$name"
  ln -sf "$DEST/pkg/$name/usr/bin/$name" "$DEST/bin/$name"
done
rm -rf "$APT/lists" "$APT/cache"
"$DEST/bin/cosign" version >/dev/null 2>&1
"$DEST/bin/notation" version >/dev/null
trap - ERR
