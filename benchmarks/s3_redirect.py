"""The registry's own CPU per GiB of blob pulled from S3, streaming vs `storage.s3.redirect: true`.

moto's server mode (tests/s3server.py) plays S3 in its own process; two `trustreg serve` processes
share its bucket, one streaming blobs, one answering 307 to presigned URLs. A client pulls the same
blob through each (following the redirect, as skopeo/docker/containerd do) and the registry
process's CPU time (utime + stime from /proc) is measured around the pulls.

    python benchmarks/s3_redirect.py                  # 256 MiB blob, 3 pulls each
    python benchmarks/s3_redirect.py --size-mib 64 --pulls 2 --json benchmarks/results/s3_redirect.json

Exits 1 if any pulled byte differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.e2e.conftest import Server, start_server  # noqa: E402
from tests.s3server import create_bucket, s3_config, start_moto  # noqa: E402

MiB = 1 << 20
CHUNK = 1 << 20


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def make_blob(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            data = os.urandom(min(CHUNK, left))
            hasher.update(data)
            f.write(data)
            left -= len(data)
    return f"sha256:{hasher.hexdigest()}"


def pull(url: str) -> tuple[str, int]:
    """GET following redirects; (sha256 of the body, status of the first answer)."""
    first = {}

    class Record(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
            first.setdefault("status", code)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    hasher = hashlib.sha256()
    with urllib.request.build_opener(Record).open(url, timeout=600) as resp:
        first.setdefault("status", resp.status)
        while chunk := resp.read(CHUNK):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}", first["status"]


def measure(server: Server, digest: str, pulls: int, size: int) -> dict[str, float]:
    url = f"{server.url}/v2/bench/blob/blobs/{digest}"
    before, t0 = cpu_seconds(server.proc.pid), time.monotonic()
    statuses = set()
    for _ in range(pulls):
        got, status = pull(url)
        if got != digest:
            raise SystemExit(f"pulled bytes differ: {got} != {digest}")
        statuses.add(status)
    cpu, wall = cpu_seconds(server.proc.pid) - before, time.monotonic() - t0
    gib = size * pulls / (1 << 30)
    return {"cpu_seconds": round(cpu, 3), "cpu_seconds_per_gib": round(cpu / gib, 3),
            "wall_seconds": round(wall, 2), "MiB_per_s": round(size * pulls / MiB / wall, 1),
            "first_status": sorted(statuses)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--pulls", type=int, default=3)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    size = args.size_mib * MiB
    endpoint, stop_moto = start_moto()
    servers: list[Server] = []
    try:
        bucket = create_bucket(endpoint)
        work = Path(tempfile.mkdtemp(prefix="trustreg-bench-redirect-"))
        digest = make_blob(work / "blob", size)
        base = {"trust": {"keys": {"insecure_dev_passphrase": True}}, "log": {"level": "warning"}}
        for name, redirect in (("streaming", False), ("redirect", True)):
            storage = {"s3": s3_config(endpoint, bucket, redirect=redirect, redirect_expiry=300)}
            servers.append(start_server(work / name, {**base, "storage": storage}))
        with (work / "blob").open("rb") as body:
            request = urllib.request.Request(f"{servers[0].url}/v2/bench/blob/blobs/uploads/?digest={digest}",
                                             data=body, method="POST", headers={"Content-Length": str(size)})
            with urllib.request.urlopen(request, timeout=600) as resp:
                assert resp.status == 201
        results = {"size_mib": args.size_mib, "pulls": args.pulls}
        for name, server in zip(("streaming", "redirect"), servers, strict=True):
            pull(f"{server.url}/v2/bench/blob/blobs/{digest}")  # warm-up (connections, caches)
            results[name] = measure(server, digest, args.pulls, size)
        results["cpu_ratio_streaming_over_redirect"] = round(
            results["streaming"]["cpu_seconds_per_gib"] / max(results["redirect"]["cpu_seconds_per_gib"], 1e-3), 1)
    finally:
        for server in servers:
            server.stop()
        stop_moto()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
