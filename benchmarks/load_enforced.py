"""Load: 1000 concurrent connections doing enforced manifest GETs of a signed tag for a minute.

    python benchmarks/load_enforced.py [--connections 1000] [--duration 60] [--workers 1]

Starts `trustreg serve` (filesystem storage in a temp dir, project `secure` enforcing content trust),
pushes an image, signs its tag through the registry's own Notary API (root and targets keys held here,
timestamp and snapshot by the server, as `notary init` does), checks that enforcement is on (an unsigned
tag gets 412), then drives the GETs with wrk (or an aiohttp client if wrk is missing) while sampling
the server's RSS. Prints requests/s, latency, errors (non-200 responses and socket errors) and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchlib import free_port, rss_bytes  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from tests.reliability.support import TrustPublisher, publish_http, push_image  # noqa: E402

SERVER_NAME = "registry.bench"
REPO = "secure/app"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append(rss_bytes(self.pid) // 1024)


def start(workdir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = {
        "http": {"addr": f"127.0.0.1:{port}", "workers": workers},
        "log": {"level": "warning"},
        "storage": {"filesystem": {"root": str(workdir / "data")}},
        "trust": {"server_names": [SERVER_NAME]},
        "projects": {"secure": {"content_trust": {"enforce": True}}},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "serve", "--config", str(workdir / "config.yaml")],
        cwd=REPO_ROOT, stdout=(workdir / "server.log").open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "TRUSTREG_TRUST_PASSPHRASE": "benchmark"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError((workdir / "server.log").read_text())


async def prepare(url: str) -> str:
    """Push and sign `secure/app:signed`, push an unsigned tag; check enforcement; returns the URL to load."""
    async with aiohttp.ClientSession() as s:
        digest, body = await push_image(s, url, REPO, "signed", "benchmark")
        await push_image(s, url, REPO, "unsigned", "other")
        status = await publish_http(s, url, TrustPublisher(f"{SERVER_NAME}/{REPO}"), "signed", digest, len(body))
        assert status == 200, status
        headers = {"Accept": ACCEPT}
        async with s.get(f"{url}/v2/{REPO}/manifests/unsigned", headers=headers) as r:
            assert r.status == 412, f"enforcement is not on: unsigned tag answered {r.status}"
        async with s.get(f"{url}/v2/{REPO}/manifests/signed", headers=headers) as r:
            assert r.status == 200 and await r.read() == body, r.status
    return f"{url}/v2/{REPO}/manifests/signed"


def run_wrk(target: str, connections: int, duration: int) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "status.lua"
    script.write_text(  # count every non-200 (wrk itself counts only >= 400 as "non-2xx or 3xx")
        "local bad = 0\n"
        "response = function(status, headers, body) if status ~= 200 then bad = bad + 1 end end\n"
        "done = function(summary, latency, requests) io.write(string.format('NON200 %d\\n', bad)) end\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
         "-H", f"Accept: {ACCEPT}", "-s", str(script), target],
        capture_output=True, text=True, check=True,
    ).stdout
    print(out)
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(int(x) for x in socket_errors.groups())) if socket_errors else 0.0
    result["non_200"] = float(re.search(r"NON200 (\d+)", out).group(1))  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}_ms"] = float(m.group(1)) * scale
    return result


async def run_aiohttp(target: str, connections: int, duration: int) -> dict[str, float]:
    ok = errors = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers={"Accept": ACCEPT}) as s:

        async def loop() -> None:
            nonlocal ok, errors
            while time.monotonic() < deadline:
                try:
                    async with s.get(target) as r:
                        await r.read()
                        ok += r.status == 200
                        errors += r.status != 200
                except aiohttp.ClientError:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return {"requests_per_s": (ok + errors) / elapsed, "requests": ok + errors, "non_200": errors,
            "socket_errors": 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    workdir = Path(tempfile.mkdtemp(prefix="trustreg-load-"))
    proc, url = start(workdir, args.workers)
    try:
        target = asyncio.run(prepare(url))
        idle = rss_bytes(proc.pid) // 1024
        sampler = RssSampler(proc.pid)
        sampler.start()
        if shutil.which("wrk"):
            result = run_wrk(target, args.connections, args.duration)
        else:
            result = asyncio.run(run_aiohttp(target, args.connections, args.duration))
        sampler.stopped.set()
        sampler.join()
        alive = proc.poll() is None
        print(f"connections          {args.connections} ({'wrk' if shutil.which('wrk') else 'aiohttp'}), "
              f"{args.duration}s, {args.workers} worker(s), enforced GET of a signed tag")
        print(f"requests             {int(result['requests'])}  ({result['requests_per_s']:.0f} req/s)")
        if "p50_ms" in result:
            print(f"latency              p50 {result['p50_ms']:.1f} ms, p99 {result.get('p99_ms', 0):.1f} ms")
        print(f"errors               non-200 {int(result['non_200'])}, socket {int(result['socket_errors'])}")
        print(f"server RSS           idle {idle / 1024:.1f} MiB, peak {max(sampler.samples) / 1024:.1f} MiB, "
              f"end {sampler.samples[-1] / 1024:.1f} MiB")
        print(f"server alive         {alive}")
        return 0 if alive and result["non_200"] == 0 and result["socket_errors"] == 0 else 1
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
