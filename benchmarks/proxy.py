"""A cached manifest GET through a proxy project vs the same manifest GET from a local project (issue 19).

    python benchmarks/proxy.py                 # 5 rounds of 5 x 2 s slices per path, 64 connections (~2.5 min)
    python benchmarks/proxy.py --quick         # 1 round of 2 x 1 s slices
    python benchmarks/proxy.py --enforced      # both projects enforce cosign (a Python-made signature)

One trustreg (`python -m registry.cli serve`, fresh filesystem storage, log level warning: no access
log) serves project `local` and project `hub`, a proxy of a distribution 2.8.2 (`docker-registry`) on
loopback holding the same image. The image is pushed to `local/app:v1` and to the upstream's `app:v1`;
one GET through `hub/app:v1` admits it (`tag_ttl` 3600 s: every later GET is a cache hit, checked by the
`X-Trustreg-Proxy: hit` header before and after the runs). Then `wrk` (1 thread, --connections, with
benchmarks/wrk_paths.lua) GETs `local/app/manifests/v1` and `hub/app/manifests/v1` turn about (A B B A
A ...) in --slices slices per round, each path's slices added up per round. Reported per round and as
medians: req/s, server CPU per 1000 requests (utime+stime of the server from /proc), p50/p99, and the
proxy's cost two ways: in server CPU per request (proxy / local - 1), which is the verdict (on a
small shared machine the load generator and other processes move throughput by tens of percent from
one slice to the next, CPU per request much less), and in throughput (local req/s / proxy req/s - 1).
The target is a cost within 10%; the exit status is 1 when it is not met. JSON in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

sys.path.insert(0, str(bl.REPO))
from tests.helpers import descriptor, digest_of  # noqa: E402
from tests.signatures import factory  # noqa: E402

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_paths.lua"
TARGET = 0.10
PATHS = {"local": "/v2/local/app/manifests/v1", "proxy": "/v2/hub/app/manifests/v1"}


async def push_image(base: str, repo: str, signing_key: Any | None) -> str:
    """A small image (config and one 64 KiB layer) at `<repo>:v1`, and with `signing_key` its cosign
    signature (legacy `.sig` tag); returns the manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "bench": "proxy"}).encode()
    layer = bytes(range(256)) * 256
    async with bl.session() as s:
        for blob in (config, layer):
            await bl.push_small(s, base, repo, blob, digest_of(blob))
        manifest = json.dumps({"schemaVersion": 2, "mediaType": bl.OCI_MANIFEST,
                               "config": descriptor(bl.OCI_CONFIG, config),
                               "layers": [descriptor(bl.OCI_LAYER, layer)]}).encode()
        async with s.put(f"{base}/v2/{repo}/manifests/v1", data=manifest,
                         headers={"Content-Type": bl.OCI_MANIFEST}) as r:
            await bl._expect(r, 201, "manifest PUT")
        digest = digest_of(manifest)
        if signing_key is not None:
            artifact = factory.cosign_legacy(digest, [signing_key])
            for blob in artifact.blobs:
                await bl.push_small(s, base, repo, blob, digest_of(blob))
            async with s.put(f"{base}/v2/{repo}/manifests/{artifact.tag}", data=artifact.manifest,
                             headers={"Content-Type": bl.OCI_MANIFEST}) as r:
                await bl._expect(r, 201, "signature PUT")
    return digest


async def check(base: str, path: str, digest: str) -> str:
    """GET `path`: it must be `digest`; returns the X-Trustreg-Proxy header ("" for a local project)."""
    async with bl.session() as s, s.get(f"{base}{path}", headers={"Accept": bl.ACCEPT}) as r:
        await bl._expect(r, 200, f"GET {path}")
        if r.headers.get("Docker-Content-Digest") != digest:
            raise RuntimeError(f"GET {path} answered {r.headers.get('Docker-Content-Digest')}, not {digest}")
        return r.headers.get("X-Trustreg-Proxy", "")


def wrk(server: bl.Server, path: str, seconds: int, connections: int) -> dict[str, Any]:
    """One wrk run; the server's CPU seconds are taken around it."""
    env = {**os.environ, "WRK_METHOD": "GET", "WRK_PATHS": path, "WRK_ACCEPT": bl.ACCEPT}
    cpu = bl.cpu_seconds(server.pid)
    r = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(WRK_SCRIPT),
                        server.url], env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in r.stdout.splitlines() if x.startswith("JSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    w = json.loads(line[5:])
    errors = sum(w[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    if errors:
        raise RuntimeError(f"wrk GET {path}: {errors} errors ({w})")
    return {"requests": w["requests"], "seconds": w["duration_us"] / 1e6, "cpu": bl.cpu_seconds(server.pid) - cpu,
            "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000}


def round_of(server: bl.Server, args: argparse.Namespace, number: int) -> dict[str, dict[str, float]]:
    """Both paths turn about in slices (A B B A ...; the first swapped every round), added up per path."""
    parts: dict[str, list[dict[str, Any]]] = {"local": [], "proxy": []}
    order = ["local", "proxy"] if number % 2 == 0 else ["proxy", "local"]
    for i in range(args.slices):
        for name in order if i % 2 == 0 else order[::-1]:
            parts[name].append(wrk(server, PATHS[name], args.slice_seconds, args.connections))
    out = {}
    for name, runs in parts.items():
        requests = sum(r["requests"] for r in runs)
        out[name] = {"req_s": requests / sum(r["seconds"] for r in runs),
                     "cpu_per_1k": 1000 * sum(r["cpu"] for r in runs) / requests,
                     "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                     "p99_ms": statistics.median(r["p99_ms"] for r in runs)}
    return out


def cpu_cost(r: dict[str, dict[str, float]]) -> float:
    return r["proxy"]["cpu_per_1k"] / r["local"]["cpu_per_1k"] - 1


def throughput_cost(r: dict[str, dict[str, float]]) -> float:
    return r["local"]["req_s"] / r["proxy"]["req_s"] - 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 round of 2 x 1 s slices")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--slices", type=int, default=5, help="slices per path per round (default 5)")
    p.add_argument("--slice-seconds", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--enforced", action="store_true", help="both projects enforce cosign (trust root `bench`)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "proxy.json")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.slices, args.slice_seconds = 1, 2, 1

    work = Path(tempfile.mkdtemp(prefix="trustreg-bench-proxy-"))
    upstream = bl.start_distribution(work / "distribution")
    server = None
    try:
        key = factory.ec_key() if args.enforced else None
        policy: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        if key is not None:
            (work / "bench.pub").write_text(factory.public_pem(key))
            extra["trust_roots"] = {"bench": {"type": "cosign-key", "public_keys": [str(work / "bench.pub")]}}
            policy = {"content_trust": {"enforce": True, "require_any": [{"cosign": {"trust_root": "bench"}}]}}
        extra["projects"] = {"local": dict(policy), "hub": {"proxy": {"url": upstream.url, "tag_ttl": 3600}, **policy}}
        extra["trust"] = {"keys": {"insecure_dev_passphrase": True}}
        server = bl.start_trustreg(work / "trustreg", extra)
        digest = asyncio.run(push_image(upstream.url, "app", key))
        if asyncio.run(push_image(server.url, "local/app", key)) != digest:
            raise RuntimeError("the local and upstream images differ")
        first = asyncio.run(check(server.url, PATHS["proxy"], digest))
        hits = [asyncio.run(check(server.url, PATHS["proxy"], digest))]
        asyncio.run(check(server.url, PATHS["local"], digest))
        if first != "miss" or hits[0] != "hit":
            raise RuntimeError(f"expected a proxy miss then hits, got {first!r}, {hits[0]!r}")
        rounds = []
        for number in range(args.rounds):
            rounds.append(round_of(server, args, number))
            r = rounds[-1]
            print(f"round {number + 1}: local {r['local']['req_s']:,.0f} req/s {r['local']['cpu_per_1k']:.3f} "
                  f"CPU s/1k, proxy {r['proxy']['req_s']:,.0f} req/s {r['proxy']['cpu_per_1k']:.3f} CPU s/1k: "
                  f"cost {cpu_cost(r):+.1%} CPU, {throughput_cost(r):+.1%} throughput", flush=True)
        hits.append(asyncio.run(check(server.url, PATHS["proxy"], digest)))
        if hits[-1] != "hit":
            raise RuntimeError(f"the proxy GET was not a cache hit after the runs: {hits[-1]!r}")
    finally:
        if server is not None:
            server.stop()
        upstream.stop()
        bl.cleanup(work)

    costs = [cpu_cost(r) for r in rounds]
    throughput_costs = [throughput_cost(r) for r in rounds]
    summary = {name: {k: statistics.median(r[name][k] for r in rounds) for k in rounds[0][name]}
               for name in ("local", "proxy")}
    cost, throughput = statistics.median(costs), statistics.median(throughput_costs)
    result = {"machine": bl.machine(), "load_average": os.getloadavg(),
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "rounds": rounds, "cpu_costs": costs, "throughput_costs": throughput_costs, "median": summary,
              "cpu_cost": cost, "throughput_cost": throughput, "target": TARGET, "met": cost <= TARGET}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| path | req/s | server CPU s/1k req | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for name, label in (("local", "local/app:v1"), ("proxy", "hub/app:v1 (proxy, cached)")):
        m = summary[name]
        print(f"| {label} | {m['req_s']:,.0f} | {m['cpu_per_1k']:.3f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} |")
    print(f"\nproxy cost in server CPU per request: {cost:+.1%} (median; rounds "
          f"{', '.join(f'{c:+.1%}' for c in costs)}); in throughput: {throughput:+.1%} (rounds "
          f"{', '.join(f'{c:+.1%}' for c in throughput_costs)}); target <= {TARGET:.0%}: "
          f"{'met' if cost <= TARGET else 'NOT met'}{' (both enforced: cosign)' if key else ''}")
    return 0 if cost <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
