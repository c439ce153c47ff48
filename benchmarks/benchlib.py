"""Shared pieces of the benchmarks: starting registries on loopback, /proc accounting, an efficient
aiohttp push/pull client.

Nothing here is imported by trustreg itself; the benchmarks are run as scripts
(`python benchmarks/compare.py`, `python benchmarks/memory.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DISTRIBUTION_BIN = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- /proc accounting --------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a trustreg supervisor and its workers)."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree, in seconds (live processes only)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """Current resident set of the process tree (sum)."""
    return sum(_status_kib(p, "VmRSS:") for p in process_tree(pid)) * 1024


def hwm_bytes(pid: int) -> int:
    """Peak resident set (VmHWM) of the largest process of the tree: the kernel's own peak."""
    return max((_status_kib(p, "VmHWM:") for p in process_tree(pid)), default=0) * 1024


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (write 5 to clear_refs) so a phase gets its own peak."""
    ok = True
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class RssSampler:
    """Samples the RSS of a process tree in a thread; `peak` is the largest sample (bytes)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


# --- servers -----------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    workdir: Path
    log_path: Path
    scheme: str = "http"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 30) -> None:
        ctx = ssl._create_unverified_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_distribution(workdir: Path) -> Server:
    """distribution (Debian `docker-registry`) with filesystem storage under `workdir`."""
    if not os.path.exists(DISTRIBUTION_BIN):
        raise RuntimeError(f"{DISTRIBUTION_BIN} not found (apt-get install docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},  # as in the Debian package's default config
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    config_path = workdir / "distribution.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "distribution.log"
    proc = subprocess.Popen(
        [DISTRIBUTION_BIN, "serve", str(config_path)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = Server("distribution", proc, port, workdir, log_path)
    server.wait_ready()
    return server


def start_trustreg(workdir: Path, extra_config: dict[str, Any] | None = None, storage: dict | None = None,
                   workers: int = 1, cwd: Path = REPO, tls: dict[str, str] | None = None,
                   profile: Path | None = None) -> Server:
    """`python -m registry.cli serve` from `cwd` (a checkout) with fresh storage under `workdir`;
    with `profile`, under cProfile (the stats are written there when the server stops)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "http": {"addr": f"127.0.0.1:{port}"},
        "log": {"level": "warning"},  # no access log, like distribution's `accesslog: disabled`
        "storage": storage or {"filesystem": {"root": str(workdir / "data")}},
    }
    if workers > 1:
        config["http"]["workers"] = workers
    if tls:
        config["http"]["tls"] = tls
    config.update(extra_config or {})
    config_path = workdir / "trustreg.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "trustreg.log"
    proc = subprocess.Popen(
        [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []),
         "-m", "registry.cli", "serve", "--config", str(config_path)],
        cwd=cwd,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TRUSTREG_TRUST_PASSPHRASE": "benchmark-passphrase", "PYTHONPATH": str(cwd)},
    )
    server = Server("trustreg", proc, port, workdir, log_path, "https" if tls else "http")
    server.wait_ready()
    return server


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- blobs -------------------------------------------------------------------------------------
class Blob:
    """A blob made of a shared (large, pre-generated) body followed by a short unique suffix, so every
    push stores new content while the client hashes the big part only once."""

    def __init__(self, body: memoryview, body_hasher: Any, suffix: bytes) -> None:
        self.body = body
        self.suffix = suffix
        h = body_hasher.copy()
        h.update(suffix)
        self.digest = f"sha256:{h.hexdigest()}"
        self.size = len(body) + len(suffix)

    def slices(self, chunk: int = MiB) -> list[memoryview]:
        """The content as zero-copy slices (the last one is the suffix)."""
        out = [self.body[i : i + chunk] for i in range(0, len(self.body), chunk)]
        out.append(memoryview(self.suffix))
        return out

    def ranges(self, part: int) -> list[tuple[int, list[memoryview]]]:
        """The content as consecutive parts of `part` bytes (the last one takes the remainder):
        (start offset, slices of the part)."""
        out: list[tuple[int, list[memoryview]]] = []
        n = len(self.body)
        starts = list(range(0, n, part))
        for i, start in enumerate(starts):
            end = n if i == len(starts) - 1 else start + part
            pieces = [self.body[j : min(j + MiB, end)] for j in range(start, end, MiB)]
            if i == len(starts) - 1:
                pieces.append(memoryview(self.suffix))
            out.append((start, pieces))
        return out


class BlobSource:
    """`size` random bytes generated once; `blob(tag)` makes a distinct blob of about that size."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        view = memoryview(self.data)
        for i in range(0, size, 16 * MiB):
            piece = os.urandom(min(16 * MiB, size - i))
            view[i : i + len(piece)] = piece
        self.view = memoryview(self.data)
        self.hasher = hashlib.sha256(self.view)

    def blob(self, tag: str) -> Blob:
        return Blob(self.view, self.hasher, f"\n{tag}\n".encode().ljust(32, b"#"))


async def _stream(pieces: Sequence[memoryview]) -> AsyncIterator[memoryview]:
    for p in pieces:
        yield p


def _location(base: str, resp: aiohttp.ClientResponse) -> str:
    loc = resp.headers["Location"]
    return loc if loc.startswith("http") else base + loc


async def _expect(resp: aiohttp.ClientResponse, status: int, what: str) -> None:
    if resp.status != status:
        body = (await resp.read())[:400]
        raise RuntimeError(f"{what}: HTTP {resp.status} (expected {status}): {body!r}")


async def push_monolithic(session: aiohttp.ClientSession, base: str, repo: str, blob: Blob) -> None:
    """POST an upload session, then PUT the whole blob with ?digest= (what docker does)."""
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await _expect(r, 202, "start upload")
        loc = _location(base, r)
    sep = "&" if "?" in loc else "?"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
    async with session.put(f"{loc}{sep}digest={blob.digest}", data=_stream(blob.slices()), headers=headers) as r:
        await _expect(r, 201, "monolithic PUT")


async def push_small(session: aiohttp.ClientSession, base: str, repo: str, data: bytes, digest: str) -> None:
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await _expect(r, 202, "start upload")
        loc = _location(base, r)
    sep = "&" if "?" in loc else "?"
    headers = {"Content-Type": "application/octet-stream"}
    async with session.put(f"{loc}{sep}digest={digest}", data=data, headers=headers) as r:
        await _expect(r, 201, "small blob PUT")


async def push_chunked(session: aiohttp.ClientSession, base: str, repo: str, blob: Blob, part: int) -> None:
    """POST, then one PATCH per `part` bytes with Content-Range, then PUT ?digest= with no body."""
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await _expect(r, 202, "start upload")
        loc = _location(base, r)
    for start, pieces in blob.ranges(part):
        length = sum(len(p) for p in pieces)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{start}-{start + length - 1}",
        }
        async with session.patch(loc, data=_stream(pieces), headers=headers) as r:
            await _expect(r, 202, "PATCH")
            loc = _location(base, r)
    sep = "&" if "?" in loc else "?"
    async with session.put(f"{loc}{sep}digest={blob.digest}", headers={"Content-Length": "0"}) as r:
        await _expect(r, 201, "final PUT")


async def pull(session: aiohttp.ClientSession, base: str, repo: str, digest: str, size: int,
               verify: bool = False) -> None:
    """GET a blob, reading and discarding it (hashing it only when `verify`)."""
    hasher = hashlib.sha256() if verify else None
    got = 0
    async with session.get(f"{base}/v2/{repo}/blobs/{digest}") as r:
        await _expect(r, 200, "blob GET")
        while True:
            chunk = await r.content.readany()
            if not chunk:
                break
            got += len(chunk)
            if hasher is not None:
                hasher.update(chunk)
    if got != size:
        raise RuntimeError(f"pulled {got} bytes of {size}")
    if hasher is not None and f"sha256:{hasher.hexdigest()}" != digest:
        raise RuntimeError("pulled content has the wrong digest")


def session(limit: int = 128, timeout: float = 300) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False),
        timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False,
    )


def machine() -> dict[str, str]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        dist = subprocess.run([DISTRIBUTION_BIN, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        dist = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "distribution": dist.strip(),
    }


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


# --- HEAD load -----------------------------------------------------------------------------------
async def _head_load(port: int, path: str, headers: dict[str, str], connections: int, duration: float) -> dict:
    """Keep-alive HEAD requests on `connections` raw connections for `duration` seconds.

    wrk cannot do HEAD (its HTTP parser waits for the body a HEAD response announces but never
    sends: wg/wrk#198), so HEAD load comes from this minimal client: one request in flight per
    connection, the response read up to the blank line (a HEAD response has no body)."""
    lines = [f"HEAD {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def conn() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else 0.0

    return {"value": len(latencies) / elapsed, "requests": len(latencies), "elapsed": elapsed,
            "p50_ms": pct(50), "p99_ms": pct(99), "errors": errors}


def head_load(port: int, path: str, headers: dict[str, str], connections: int, duration: float) -> dict:
    """Run `_head_load` on uvloop when it is installed (a cheaper client leaves more CPU to the server)."""
    try:
        import uvloop

        return uvloop.run(_head_load(port, path, headers, connections, duration))
    except ImportError:
        return asyncio.run(_head_load(port, path, headers, connections, duration))
