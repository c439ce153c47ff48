#!/usr/bin/env bash
# Build the trustreg container image and prove it runs, on a machine without Docker Hub access:
#   1. make the Dockerfile's base image (python:3.11-slim) locally from Debian with debootstrap
#      (only when dockerd does not have it yet) and `docker import` it under that name;
#   2. docker build (host network, so pip reaches the package index);
#   3. run it with TLS (what content trust needs), wait for the HEALTHCHECK to report healthy, push and
#      pull a blob through it over https; then run it on a root-owned data directory and check the error
#      names the uid that must own it.
# Uses $DOCKER_HOST if it answers, else starts a private dockerd (vfs, no bridge) for the run.
# Run as root. Usage: scripts/build-image.sh [TAG]   (default trustreg:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-trustreg:dev}
WORK=$(mktemp -d /tmp/trustreg-image.XXXXXX)
cleanup() {
  docker rm -f trustreg-image-check >/dev/null 2>&1 || true
  [ -n "${DOCKERD_PID:-}" ] && kill "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null || true
  umount "$WORK/exec/netns/default" 2>/dev/null || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive

if ! docker version >/dev/null 2>&1; then
  echo "[image] starting a private dockerd in $WORK"
  dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
    --data-root "${TRUSTREG_DOCKER_ROOT:-/var/lib/trustreg-image-docker}" --exec-root "$WORK/exec" \
    --pidfile "$WORK/pid" -H "unix://$WORK/docker.sock" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$WORK/docker.sock"
  for _ in $(seq 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
fi

BASE=$(awk '/^FROM /{print $2; exit}' Dockerfile)
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "[image] building base $BASE with debootstrap"
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1
  ln -sf python3 "$WORK/rootfs/usr/bin/python"
  ln -sf pip3 "$WORK/rootfs/usr/bin/pip"
  rm -f "$WORK"/rootfs/usr/lib/python3*/EXTERNALLY-MANAGED  # like the official image: pip installs system-wide
  # This machine's own extra CAs (e.g. a TLS-inspecting proxy in front of the package index).
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
    chroot "$WORK/rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
  tar -C "$WORK/rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
fi

echo "[image] docker build -t $TAG"
docker build --network host -t "$TAG" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
docker image inspect --format '[image] size {{.Size}} bytes, user {{.Config.User}}, volumes {{.Config.Volumes}}' "$TAG"

PORT=${TRUSTREG_IMAGE_PORT:-5055}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
chmod 644 "$WORK/tls.key" "$WORK/tls.crt"
printf 'http:\n  addr: 127.0.0.1:%s\n  tls:\n    certificate: /etc/trustreg/tls.crt\n    key: /etc/trustreg/tls.key\nstorage:\n  filesystem:\n    root: /var/lib/trustreg\n' \
  "$PORT" >"$WORK/config.yaml"
chmod 644 "$WORK/config.yaml"
docker run -d --name trustreg-image-check --network host \
  -e TRUSTREG_TRUST_PASSPHRASE=image-check-passphrase \
  -v "$WORK/tls.crt:/etc/trustreg/tls.crt:ro" -v "$WORK/tls.key:/etc/trustreg/tls.key:ro" \
  -v "$WORK/config.yaml:/etc/trustreg/config.yaml:ro" "$TAG" >/dev/null
for _ in $(seq 90); do
  state=$(docker inspect --format '{{.State.Health.Status}}' trustreg-image-check 2>/dev/null || echo none)
  [ "$state" = healthy ] && break
  sleep 1
done
echo "[image] health (TLS): $state"
[ "$state" = healthy ] || { docker logs trustreg-image-check; exit 1; }
blob="trustreg image check $$"
digest="sha256:$(printf '%s' "$blob" | sha256sum | cut -d' ' -f1)"
code=$(curl -s --cacert "$WORK/tls.crt" -o /dev/null -w '%{http_code}' -X POST --data-binary "$blob" \
  "https://127.0.0.1:$PORT/v2/check/image/blobs/uploads/?digest=$digest")
[ "$code" = 201 ] || { echo "push answered $code"; docker logs trustreg-image-check; exit 1; }
[ "$(curl -fsS --cacert "$WORK/tls.crt" "https://127.0.0.1:$PORT/v2/check/image/blobs/$digest")" = "$blob" ]
echo "[image] $TAG: healthy under TLS, push + pull through the container over https OK"

# A root-owned data directory: the container refuses to start and names the uid that must own it.
mkdir -p "$WORK/rootowned" && chmod 755 "$WORK/rootowned"
out=$(docker run --rm --network host -e TRUSTREG_TRUST_PASSPHRASE=x -e TRUSTREG__HTTP__ADDR=127.0.0.1:$((PORT + 1)) \
  -v "$WORK/rootowned:/var/lib/trustreg" "$TAG" 2>&1 || true)
echo "$out" | grep -q "trustreg runs as uid 10001" || { echo "root-owned volume: $out"; exit 1; }
echo "[image] root-owned volume refused: $(echo "$out" | tail -1)"
