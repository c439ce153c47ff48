"""trustreg vs distribution, side by side on this machine (issue 8).

Starts distribution 2.8 (`/usr/bin/docker-registry`, Debian package `docker-registry`) and trustreg
(`python -m registry.cli serve`) on loopback ports, each with fresh filesystem storage in a temp dir, and
runs the same workloads against both, interleaved (phase by phase: A then B, the order swapped every
round) so machine noise hits both. Reports medians over the rounds, ratios trustreg/distribution, and
server CPU seconds (utime+stime of the server process tree, from /proc) per GiB and per 1000 requests,
which is fairer than wall time on a small machine where the load generator competes with the server.

    python benchmarks/compare.py            # full: 3 rounds, 256 MiB blobs, wrk 10 s (~6-8 min)
    python benchmarks/compare.py --quick    # smoke: 1 round, small sizes, wrk 3 s (~1-2 min)
    python benchmarks/compare.py --rounds 5 --out /tmp/r.json --trustreg-workers 2

Workloads (every one bounded by --phase-timeout seconds; a phase cut short is marked "partial"):
  push_mono        monolithic push of a 256 MiB blob (POST, then one PUT ?digest=)       MiB/s
  push_chunked     chunked push of a 256 MiB blob (8 MiB PATCHes with Content-Range)    MiB/s
  pull             GET of that blob                                                     MiB/s
  pull_concurrent  32 concurrent GETs of a 16 MiB blob                        aggregate MiB/s
  push_small       1000 pushes of 4 KiB blobs (POST + PUT each), concurrency 32         ops/s
  manifest_put     500 OCI manifest PUTs with distinct tags, concurrency 32             ops/s
  manifest_get     manifest GET by tag, wrk, 64 connections, 10 s              req/s p50 p99
  manifest_head    manifest HEAD by tag, 64 connections, 10 s, from a minimal keep-alive client in
                   this process (wrk cannot do HEAD: wg/wrk#198)                req/s p50 p99
  *_enforced       the same on trustreg for a tag signed with the `notary` CLI in a project whose
                   policy enforces content trust (`projects: {secure: {content_trust: {enforce: true}}}`);
                   on trustreg the plain and enforced phases run turn about in --slices slices per
                   round (A B B A A ..., 2 s each by default, added up per phase), and the enforced
                   cost is the median over rounds of the paired ratios
  manifest_get_keyless  (opt-in: --only manifest_get_keyless[,...]) trustreg only: GET by tag of an
                   image signed keyless (a sigstore bundle of a private Sigstore instance made in Python,
                   tests/keyless/sigstore_instance.py) vs one signed with a cosign key (key-based bundle),
                   each in its own enforced project, turn about in --slices slices; the row is the
                   keyless req/s, its cost the median paired (keyed / keyless - 1): the verdict cache
                   makes a repeated pull cost the same whatever verified the signature
  tags_list        every page of a 500-tag list with n=100, wrk                         req/s
  catalog          every page of a 300+ repository catalog with n=100, wrk              req/s
Plus peak RSS (VmHWM per phase, and sampled VmRSS over the run) of each server.

The pushes and pulls use an aiohttp client in this process (blobs stream from one pre-generated
buffer as zero-copy slices; each blob gets a distinct 32-byte suffix so every push stores new
content, and the client hashes only that suffix per push). GET/HEAD/listing load comes from `wrk`
(Debian package `wrk`) with benchmarks/wrk_paths.lua. Both servers log at warning/error level with
no access log. Results: a table on stdout and JSON in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

sys.path.insert(0, str(bl.REPO))
from tests.clients.certs import make_certs  # noqa: E402

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_paths.lua"
APP = "bench/app"
SECURE = "secure/app"
TAGS_REPO = "bench/tags"
ENFORCE_CONFIG = {"projects": {"secure": {"content_trust": {"enforce": True}}}}

KEYLESS = "manifest_get_keyless"
KEYLESS_REPO, KEYED_REPO = "keyless/app", "keyed/app"
OPT_IN = {KEYLESS}  # run only when --only names them

# (phase, unit, normaliser for CPU: "GiB" or "kreq", target ratio trustreg/distribution or None)
PHASES: list[tuple[str, str, str, float | None]] = [
    ("push_mono", "MiB/s", "GiB", 1.0),
    ("push_chunked", "MiB/s", "GiB", 1.0),
    ("pull", "MiB/s", "GiB", 0.9),
    ("pull_concurrent", "MiB/s", "GiB", 0.9),
    ("push_small", "ops/s", "kreq", 1.0),
    ("manifest_put", "ops/s", "kreq", 1.0),
    ("manifest_get", "req/s", "kreq", None),
    ("manifest_get_enforced", "req/s", "kreq", 2.0),
    ("manifest_head", "req/s", "kreq", None),
    ("manifest_head_enforced", "req/s", "kreq", 2.0),
    (KEYLESS, "req/s", "kreq", None),
    ("tags_list", "req/s", "kreq", 1.0),
    ("catalog", "req/s", "kreq", 1.0),
]
TRUSTREG_ONLY = {"manifest_get_enforced", "manifest_head_enforced"}
# distribution has no content trust: its enforced rows are compared with its plain GET/HEAD
BASELINE = {"manifest_get_enforced": "manifest_get", "manifest_head_enforced": "manifest_head"}


# --- setup ---------------------------------------------------------------------------------------
class Target:
    """One registry under test and what the setup pushed into it."""

    def __init__(self, server: bl.Server) -> None:
        self.server = server
        self.name = server.name
        self.url = server.url
        self.config: tuple[bytes, str] = (b"", "")
        self.layer: tuple[bytes, str] = (b"", "")
        self.pull_blob: bl.Blob | None = None
        self.concurrent_blob: bl.Blob | None = None
        self.signed = False
        self.enforced_note = ""
        self.keyless = False  # keyless/app:v1 and keyed/app:v1 pushed and signed (KEYLESS)


def small_blob(tag: str, size: int = 4096) -> tuple[bytes, str]:
    data = (tag.encode() + b"\n" + os.urandom(size)).ljust(size, b"\0")[:size]
    return data, f"sha256:{hashlib.sha256(data).hexdigest()}"


def manifest(config: tuple[bytes, str], layer: tuple[bytes, str], note: str) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": bl.OCI_MANIFEST,
        "config": {"mediaType": bl.OCI_CONFIG, "digest": config[1], "size": len(config[0])},
        "layers": [{"mediaType": bl.OCI_LAYER, "digest": layer[1], "size": len(layer[0])}],
        "annotations": {"org.example.benchmark": note},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


async def put_manifest(session: aiohttp.ClientSession, base: str, repo: str, ref: str, body: bytes) -> None:
    headers = {"Content-Type": bl.OCI_MANIFEST}
    async with session.put(f"{base}/v2/{repo}/manifests/{ref}", data=body, headers=headers) as r:
        if r.status != 201:
            raise RuntimeError(f"manifest PUT {repo}:{ref}: HTTP {r.status}: {(await r.read())[:300]!r}")


async def bounded(n: int, concurrency: int, deadline: float, op: Callable[[int], Awaitable[None]]) -> int:
    """Run op(0..n-1) with `concurrency` workers until done or the deadline; returns how many finished."""
    next_i = 0
    done = 0

    async def worker() -> None:
        nonlocal next_i, done
        while next_i < n and time.monotonic() < deadline:
            i = next_i
            next_i += 1
            await op(i)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def setup_target(t: Target, args: argparse.Namespace, src_big: bl.BlobSource,
                       src_mid: bl.BlobSource) -> None:
    async with bl.session() as s:
        t.config = small_blob(f"config-{t.name}", 512)
        t.layer = small_blob(f"layer-{t.name}", 4096)
        for repo in (APP, TAGS_REPO, SECURE):
            for data, digest in (t.config, t.layer):
                await bl.push_small(s, t.url, repo, data, digest)
        await put_manifest(s, t.url, APP, "v1", manifest(t.config, t.layer, "v1"))
        t.concurrent_blob = src_mid.blob(f"concurrent-{t.name}")
        await bl.push_monolithic(s, t.url, APP, t.concurrent_blob)
        await bl.pull(s, t.url, APP, t.concurrent_blob.digest, t.concurrent_blob.size, verify=True)
        # a repository with `args.tags` tags (distinct manifests) for the tags list
        deadline = time.monotonic() + args.phase_timeout

        async def tag(i: int) -> None:
            await put_manifest(s, t.url, TAGS_REPO, f"t{i:05d}", manifest(t.config, t.layer, f"tag {i}"))

        await bounded(args.tags, 16, deadline, tag)
        # `args.repos` repositories (one small blob and one manifest each) for the catalog
        async def repo(i: int) -> None:
            name = f"bench/catalog/r{i:04d}"
            await bl.push_small(s, t.url, name, *t.config)
            await bl.push_small(s, t.url, name, *t.layer)
            await put_manifest(s, t.url, name, "latest", manifest(t.config, t.layer, name))

        await bounded(args.repos, 16, time.monotonic() + args.phase_timeout, repo)
        # correctness spot checks: GET by tag returns the manifest, the big blob round-trips
        async with s.get(f"{t.url}/v2/{APP}/manifests/v1", headers={"Accept": bl.ACCEPT}) as r:
            assert r.status == 200, f"{t.name}: manifest GET {r.status}"
    if t.name == "trustreg":
        await setup_enforced(t, args)


def notary_env() -> dict[str, str]:
    return {
        **os.environ,
        "NOTARY_ROOT_PASSPHRASE": "bench-root",
        "NOTARY_TARGETS_PASSPHRASE": "bench-targets",
        "NOTARY_SNAPSHOT_PASSPHRASE": "bench-snapshot",
    }


def sign_with_notary(workdir: Path, url: str, gun: str, tag: str, body: bytes, ca: Path | None) -> None:
    """`notary init`, `addhash` the manifest as `tag`, `publish` (the Docker Content Trust flow)."""
    trust_dir = workdir / "notary-client"
    trust_dir.mkdir(parents=True, exist_ok=True)
    base = ["notary", "-d", str(trust_dir), "-s", url]
    if ca is not None:
        base += ["--tlscacert", str(ca)]
    digest = hashlib.sha256(body).hexdigest()
    for cmd in (["init", gun], ["addhash", gun, tag, str(len(body)), "--sha256", digest], ["publish", gun]):
        r = subprocess.run(base + cmd, env=notary_env(), capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"notary {' '.join(cmd)} failed: {r.stdout}\n{r.stderr}")


async def setup_enforced(t: Target, args: argparse.Namespace) -> None:
    """Push secure/app:v1 and :unsigned; sign v1 with the notary CLI over TLS through a second trustreg
    process sharing the storage (the measured server stays on plain http, like distribution);
    check that v1 is served (200) and the unsigned tag refused (412)."""
    if shutil.which("notary") is None:
        t.enforced_note = "n/a (notary CLI not installed)"
        return
    body = manifest(t.config, t.layer, "signed v1")
    async with bl.session() as s:
        await put_manifest(s, t.url, SECURE, "v1", body)
        await put_manifest(s, t.url, SECURE, "unsigned", manifest(t.config, t.layer, "unsigned"))
    work = t.server.workdir / "signing"
    ca: Path | None = None
    signer: bl.Server | None = None
    url = t.url
    gun_host = f"127.0.0.1:{t.server.port}"
    if not args.sign_over_http:
        certs = make_certs(work / "certs")
        ca = certs.ca
        storage = {"filesystem": {"root": str(t.server.workdir / "data")}}
        tls = {"certificate": str(certs.server_chain), "key": str(certs.server_key)}
        signer = bl.start_trustreg(work / "signer", ENFORCE_CONFIG, storage=storage, tls=tls)
        url = signer.url
        gun_host = f"127.0.0.1:{signer.port}"
    try:
        sign_with_notary(work, url, f"{gun_host}/{SECURE}", "v1", body, ca)
    finally:
        if signer is not None:
            signer.stop()
    async with bl.session() as s:
        async with s.get(f"{t.url}/v2/{SECURE}/manifests/v1", headers={"Accept": bl.ACCEPT}) as r:
            if r.status != 200:
                raise RuntimeError(f"signed tag not served: HTTP {r.status} {(await r.read())[:300]!r}")
        async with s.get(f"{t.url}/v2/{SECURE}/manifests/unsigned", headers={"Accept": bl.ACCEPT}) as r:
            if r.status != 412:
                raise RuntimeError(f"unsigned tag in an enforced project answered {r.status}, not 412")
    t.signed = True
    t.enforced_note = f"signed with notary over {'TLS' if ca else 'http'}"


# --- keyless vs key-signed (opt-in) --------------------------------------------------------------
class KeylessSetup:
    """A private Sigstore instance (Fulcio CA, Rekor and CT log keys, TSA) and a cosign key; `config`
    adds their trust roots and the two enforced projects to trustreg's configuration."""

    def __init__(self, workdir: Path) -> None:
        from tests.keyless.sigstore_instance import GITHUB, RELEASE, SigstoreInstance
        from tests.signatures.factory import ec_key, public_pem

        self.instance, self.key = SigstoreInstance(), ec_key()
        workdir.mkdir(parents=True, exist_ok=True)
        root = workdir / "trusted_root.json"
        root.write_text(json.dumps(self.instance.trusted_root()))
        identity = {"issuer": GITHUB, "subject": RELEASE}

        def enforced(requirement: dict) -> dict:
            return {"content_trust": {"enforce": True, "require_any": [{"cosign": requirement}]}}

        self.config = {
            "trust_roots": {"bench-sigstore": {"type": "sigstore", "trusted_root": str(root)},
                            "bench-key": {"type": "cosign-key", "public_keys": [public_pem(self.key)]}},
            "projects": {"keyless": enforced({"trust_root": "bench-sigstore", "identities": [identity]}),
                         "keyed": enforced({"trust_root": "bench-key"})}}

    async def sign(self, t: Target) -> None:
        """Push keyless/app:v1 and keyed/app:v1 with their signature referrers; both must be served."""
        from tests.signatures.factory import cosign_bundle

        async with bl.session() as s:
            for repo in (KEYLESS_REPO, KEYED_REPO):
                for data, digest in (t.config, t.layer):
                    await bl.push_small(s, t.url, repo, data, digest)
                body = manifest(t.config, t.layer, repo)
                await put_manifest(s, t.url, repo, "v1", body)
                subject = {"mediaType": bl.OCI_MANIFEST, "digest": f"sha256:{hashlib.sha256(body).hexdigest()}",
                           "size": len(body)}
                artifact = (self.instance.bundle(subject) if repo == KEYLESS_REPO else cosign_bundle(subject, self.key))
                for blob in artifact.blobs:
                    await bl.push_small(s, t.url, repo, blob, f"sha256:{hashlib.sha256(blob).hexdigest()}")
                async with s.put(f"{t.url}/v2/{repo}/manifests/{artifact.digest}", data=artifact.manifest,
                                 headers={"Content-Type": bl.OCI_MANIFEST}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"signature of {repo}: HTTP {r.status} {(await r.read())[:300]!r}")
                async with s.get(f"{t.url}/v2/{repo}/manifests/v1", headers={"Accept": bl.ACCEPT}) as r:
                    if r.status != 200:
                        raise RuntimeError(f"{repo}:v1 not served: HTTP {r.status} {(await r.read())[:300]!r}")
        t.keyless = True


def measure_keyless(t: Target, rnd: int, args: argparse.Namespace) -> dict:
    """GET keyless/app:v1 and keyed/app:v1 turn about in slices (as measure_pair): the keyless
    numbers, with the keyed ones under "keyed"."""
    slices = max(1, min(args.slices, args.duration // 2))
    sliced = argparse.Namespace(**{**vars(args), "duration": max(1, args.duration // slices)})
    parts: dict[str, list[dict]] = {KEYLESS_REPO: [], KEYED_REPO: []}
    pid = t.server.pid
    for i in range(slices):
        for repo in (KEYLESS_REPO, KEYED_REPO) if (rnd + i) % 2 == 0 else (KEYED_REPO, KEYLESS_REPO):
            bl.reset_hwm(pid)
            cpu0 = bl.cpu_seconds(pid)
            res = measure_wrk(t, sliced, "GET", [f"/v2/{repo}/manifests/v1"], bl.ACCEPT)
            res["cpu_s"] = bl.cpu_seconds(pid) - cpu0
            res["hwm_mib"] = bl.hwm_bytes(pid) / bl.MiB
            parts[repo].append(res)
    keyless = combine_slices(parts[KEYLESS_REPO])
    keyless["keyed"] = combine_slices(parts[KEYED_REPO])
    return keyless


# --- measurements --------------------------------------------------------------------------------
def measure_wrk(t: Target, args: argparse.Namespace, method: str, paths: list[str], accept: str = "") -> dict:
    env = {**os.environ, "WRK_METHOD": method, "WRK_PATHS": " ".join(paths), "WRK_ACCEPT": accept}
    cmd = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "5s",
           "-s", str(WRK_SCRIPT), t.url]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 60)
    line = next((x for x in r.stdout.splitlines() if x.startswith("JSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    w = json.loads(line[5:])
    errors = w["status_errors"] + w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]
    secs = w["duration_us"] / 1e6
    return {
        "value": w["requests"] / secs,
        "requests": w["requests"],
        "elapsed": secs,
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "errors": errors,
    }


async def listing_pages(t: Target, first: str) -> list[str]:
    """Every page path of a paginated listing, following the Link headers."""
    pages = [first]
    async with bl.session() as s:
        path: str | None = first
        while path is not None:
            async with s.get(t.url + path) as r:
                if r.status != 200:
                    raise RuntimeError(f"{t.name} {path}: HTTP {r.status}")
                await r.read()
                link = r.headers.get("Link")
            path = None
            if link:
                nxt = link.split(";")[0].strip().strip("<>")
                path = urljoin(first, nxt)
                pages.append(path)
            if len(pages) > 1000:
                break
    return pages


async def measure_async(t: Target, phase: str, rnd: int, args: argparse.Namespace, src_big: bl.BlobSource) -> dict:
    deadline = time.monotonic() + args.phase_timeout
    size = 0
    requests = 0
    async with bl.session(limit=256, timeout=args.phase_timeout) as s:
        t0 = time.monotonic()
        if phase in ("push_mono", "push_chunked"):
            blob = src_big.blob(f"{phase}-{t.name}-{rnd}")
            if phase == "push_mono":
                await bl.push_monolithic(s, t.url, APP, blob)
                requests = 2
                t.pull_blob = blob
            else:
                await bl.push_chunked(s, t.url, APP, blob, args.chunk_mib * bl.MiB)
                requests = 2 + len(blob.ranges(args.chunk_mib * bl.MiB))
            size = blob.size
            done = 1
        elif phase == "pull":
            blob = t.pull_blob
            if blob is None:  # push_mono not run (--only): push one first, untimed
                blob = t.pull_blob = src_big.blob(f"pull-{t.name}")
                await bl.push_monolithic(s, t.url, APP, blob)
                t0 = time.monotonic()
            await bl.pull(s, t.url, APP, blob.digest, blob.size)
            size, requests, done = blob.size, 1, 1
        elif phase == "pull_concurrent":
            blob = t.concurrent_blob
            assert blob is not None
            n = args.concurrent_pulls
            done = await bounded(n, n, deadline, lambda i: bl.pull(s, t.url, APP, blob.digest, blob.size))
            size, requests = done * blob.size, done
        elif phase == "push_small":
            blobs = [small_blob(f"small-{t.name}-{rnd}-{i}") for i in range(args.small)]
            repo = f"bench/small-r{rnd}"
            t0 = time.monotonic()
            done = await bounded(args.small, args.concurrency, deadline,
                                 lambda i: bl.push_small(s, t.url, repo, *blobs[i]))
            requests = 2 * done
        elif phase == "manifest_put":
            bodies = [manifest(t.config, t.layer, f"r{rnd}-{i}") for i in range(args.manifests)]
            t0 = time.monotonic()
            done = await bounded(args.manifests, args.concurrency, deadline,
                                 lambda i: put_manifest(s, t.url, APP, f"r{rnd}-m{i:05d}", bodies[i]))
            requests = done
        else:
            raise ValueError(phase)
        elapsed = time.monotonic() - t0
    value = size / bl.MiB / elapsed if size else done / elapsed
    partial = (phase == "push_small" and done < args.small) or (phase == "manifest_put" and done < args.manifests)
    return {"value": value, "elapsed": elapsed, "bytes": size, "requests": requests, "partial": partial}


def measure(t: Target, phase: str, rnd: int, args: argparse.Namespace, src_big: bl.BlobSource) -> dict | None:
    pid = t.server.pid
    if phase in TRUSTREG_ONLY and not t.signed:
        return None
    bl.reset_hwm(pid)
    cpu0 = bl.cpu_seconds(pid)
    if phase in ("manifest_get", "manifest_head", "manifest_get_enforced", "manifest_head_enforced"):
        repo = SECURE if phase.endswith("_enforced") else APP
        path = f"/v2/{repo}/manifests/v1"
        if "head" in phase:
            res = bl.head_load(t.server.port, path, {"Accept": bl.ACCEPT}, args.connections, args.duration)
        else:
            res = measure_wrk(t, args, "GET", [path], bl.ACCEPT)
    elif phase == "tags_list":
        res = measure_wrk(t, args, "GET", asyncio.run(listing_pages(t, f"/v2/{TAGS_REPO}/tags/list?n=100")))
    elif phase == "catalog":
        res = measure_wrk(t, args, "GET", asyncio.run(listing_pages(t, "/v2/_catalog?n=100")))
    else:
        res = asyncio.run(measure_async(t, phase, rnd, args, src_big))
    res["cpu_s"] = bl.cpu_seconds(pid) - cpu0
    res["hwm_mib"] = bl.hwm_bytes(pid) / bl.MiB
    if res.get("bytes"):
        res["cpu_per_gib"] = res["cpu_s"] / (res["bytes"] / bl.GiB)
    if res.get("requests"):
        res["cpu_per_kreq"] = res["cpu_s"] / (res["requests"] / 1000)
    return res


def measure_pair(t: Target, pair: list[str], rnd: int, args: argparse.Namespace,
                 src_big: bl.BlobSource) -> dict[str, dict | None]:
    """The plain and enforced phases in `args.slices` alternating slices (A B B A A B ...) of
    duration/slices seconds each, each phase's slices added up: the enforced cost is a few percent,
    well inside the machine's drift over 10 s, so the two are measured turn about, not one after the
    other. p50/p99 are the medians of the slices' percentiles."""
    slices = max(1, min(args.slices, args.duration // 2))
    sliced = argparse.Namespace(**{**vars(args), "duration": max(1, args.duration // slices)})
    parts: dict[str, list[dict]] = {p: [] for p in pair}
    for i in range(slices):
        for p in (pair if (rnd + i) % 2 == 0 else pair[::-1]):
            res = measure(t, p, rnd, sliced, src_big)
            if res is not None:
                parts[p].append(res)
    return {p: combine_slices(rs) if rs else None for p, rs in parts.items()}


def combine_slices(rs: list[dict]) -> dict:
    requests = sum(r["requests"] for r in rs)
    elapsed = sum(r["elapsed"] for r in rs)
    cpu = sum(r["cpu_s"] for r in rs)
    return {
        "value": requests / elapsed,
        "requests": requests,
        "elapsed": elapsed,
        "p50_ms": statistics.median(r["p50_ms"] for r in rs),
        "p99_ms": statistics.median(r["p99_ms"] for r in rs),
        "errors": sum(r.get("errors", 0) for r in rs),
        "cpu_s": cpu,
        "cpu_per_kreq": cpu / (requests / 1000) if requests else None,
        "hwm_mib": max(r["hwm_mib"] for r in rs),
        "slices": len(rs),
    }


# --- report --------------------------------------------------------------------------------------
def median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r is not None and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def enforced_cost(plain: list[dict], enforced: list[dict]) -> float | None:
    """Median over rounds of the paired cost (plain req/s / enforced req/s - 1): each round measures the
    two turn about (see measure_pair), so machine noise hits both sides of a pair alike."""
    pairs = [p["value"] / e["value"] - 1 for p, e in zip(plain, enforced, strict=False) if p and e and e["value"]]
    return statistics.median(pairs) if pairs else None


def summarise(results: dict[str, dict[str, list[dict]]], notes: dict[str, str]) -> list[dict]:
    out = []
    for phase, unit, norm, target in PHASES:
        d_rows = results["distribution"].get(BASELINE.get(phase, phase), [])
        t_rows = results["trustreg"].get(phase, [])
        d, tr = median(d_rows, "value"), median(t_rows, "value")
        cpu_key = "cpu_per_gib" if norm == "GiB" else "cpu_per_kreq"
        row = {
            "phase": phase,
            "unit": unit,
            "distribution": d,
            "trustreg": tr,
            "ratio": (tr / d) if d and tr else None,
            "target": target,
            "cpu_unit": "CPU s/GiB" if norm == "GiB" else "CPU s/1k req",
            "distribution_cpu": median(d_rows, cpu_key),
            "trustreg_cpu": median(t_rows, cpu_key),
            "distribution_p50_ms": median(d_rows, "p50_ms"),
            "trustreg_p50_ms": median(t_rows, "p50_ms"),
            "distribution_p99_ms": median(d_rows, "p99_ms"),
            "trustreg_p99_ms": median(t_rows, "p99_ms"),
            "distribution_hwm_mib": max((r["hwm_mib"] for r in d_rows if r), default=None),
            "trustreg_hwm_mib": max((r["hwm_mib"] for r in t_rows if r), default=None),
            "partial": any(r.get("partial") for r in d_rows + t_rows if r),
            "errors": sum(r.get("errors", 0) for r in d_rows + t_rows if r),
        }
        if phase in TRUSTREG_ONLY:
            row["note"] = notes.get(phase, "")
            row["enforced_cost"] = enforced_cost(results["trustreg"].get(BASELINE[phase], []), t_rows)
        if phase == KEYLESS:  # distribution has no signatures: its column is its plain GET, if measured
            row["distribution"] = median(results["distribution"].get("manifest_get", []), "value")
            row["keyed"] = median([r["keyed"] for r in t_rows if r], "value")
            row["keyless_cost"] = enforced_cost([r["keyed"] for r in t_rows if r], t_rows)
        met = None
        if target is not None and row["ratio"] is not None:
            met = row["ratio"] >= target
            if norm == "GiB" and target == 0.9 and row["trustreg_cpu"] and row["distribution_cpu"]:
                met = met and row["trustreg_cpu"] <= row["distribution_cpu"]
            if row.get("enforced_cost") is not None:
                met = met and row["enforced_cost"] <= 0.10
        if row.get("keyless_cost") is not None:
            met = row["keyless_cost"] <= 0.10  # no more than a key-signed pull (within noise)
        row["met"] = met
        out.append(row)
    return out


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def table(summary: list[dict]) -> str:
    head = ("| workload | unit | distribution | trustreg | ratio | target | met | CPU (dist / trustreg) "
            "| p50 ms (dist / trustreg) | p99 ms (dist / trustreg) |")
    lines = [head, "|" + "---|" * 10]
    for r in summary:
        digits = 1 if r["unit"] == "MiB/s" else 0
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "n/a"
        target = f">= {r['target']:.1f}x" if r["target"] else "-"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        cpu = f"{fmt(r['distribution_cpu'], 2)} / {fmt(r['trustreg_cpu'], 2)} {r['cpu_unit']}"
        p50 = p99 = "-"
        if r["trustreg_p50_ms"] is not None:
            p50 = f"{fmt(r['distribution_p50_ms'], 2)} / {fmt(r['trustreg_p50_ms'], 2)}"
            p99 = f"{fmt(r['distribution_p99_ms'], 2)} / {fmt(r['trustreg_p99_ms'], 2)}"
        name = r["phase"]
        if r.get("enforced_cost") is not None:
            name += f" (vs trustreg off: {r['enforced_cost'] * 100:+.1f}% cost)"
        if r.get("keyless_cost") is not None:
            name += f" (key-signed {fmt(r['keyed'])} req/s; keyless cost {r['keyless_cost'] * 100:+.1f}%)"
        if r.get("note") and r["trustreg"] is None:
            name += f" — {r['note']}"
        if r["partial"]:
            name += " (partial: hit the time bound)"
        if r["errors"]:
            name += f" ({r['errors']} errors)"
        lines.append(f"| {name} | {r['unit']} | {fmt(r['distribution'], digits)} | {fmt(r['trustreg'], digits)} "
                     f"| {ratio} | {target} | {met} | {cpu} | {p50} | {p99} |")
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, small sizes, wrk 3 s")
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    p.add_argument("--blob-mib", type=int, help="big blob size (default 256; quick 32)")
    p.add_argument("--chunk-mib", type=int, default=8, help="PATCH size of the chunked push (default 8)")
    p.add_argument("--concurrent-pulls", type=int, default=32)
    p.add_argument("--concurrent-mib", type=int, help="blob size of the concurrent pulls (default 16; quick 4)")
    p.add_argument("--small", type=int, help="4 KiB blob pushes (default 1000; quick 200)")
    p.add_argument("--manifests", type=int, help="manifest PUTs (default 500; quick 100)")
    p.add_argument("--concurrency", type=int, default=32, help="client concurrency of small pushes/manifest PUTs")
    p.add_argument("--tags", type=int, help="tags in the tags-list repository (default 500; quick 200)")
    p.add_argument("--repos", type=int, help="repositories created for the catalog (default 300; quick 120)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10; quick 3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--slices", type=int, default=5,
                   help="trustreg's plain and enforced GET/HEAD alternate in this many slices per round (default 5)")
    p.add_argument("--wrk-threads", type=int, default=1,
                   help="wrk threads (default 1: on 2 cores the other one is left to the server)")
    p.add_argument("--phase-timeout", type=float, default=120.0, help="upper bound of each phase, seconds")
    p.add_argument("--trustreg-workers", type=int, default=1, help="trustreg http.workers (default 1)")
    p.add_argument("--trustreg-src", type=Path, default=bl.REPO,
                   help="trustreg checkout to run (default: this one; e.g. a patched scratch copy)")
    p.add_argument("--sign-over-http", action="store_true",
                   help="sign with notary over plain http (default: TLS through a signer process)")
    p.add_argument("--profile", type=Path, help="run trustreg under cProfile, writing the stats to this file")
    p.add_argument("--only", help="comma-separated phases to run (default: all)")
    p.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/compare[-quick].json)")
    a = p.parse_args(argv)
    q = a.quick
    defaults = {"rounds": (3, 1), "blob_mib": (256, 32), "concurrent_mib": (16, 4), "small": (1000, 200),
                "manifests": (500, 100), "tags": (500, 200), "repos": (300, 120), "duration": (10, 3)}
    for k, (full, quick) in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, quick if q else full)
    if a.out is None:
        a.out = HERE / "results" / ("compare-quick.json" if q else "compare.json")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            print(f"compare: {tool} not found (apt-get install {tool})", file=sys.stderr)
            return 2
    phases = [p[0] for p in PHASES]
    if args.only:
        wanted = set(args.only.split(","))
        phases = [p for p in phases if p in wanted]
    else:
        phases = [p for p in phases if p not in OPT_IN]
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="trustreg-compare-"))
    targets: list[Target] = []
    samplers: dict[str, bl.RssSampler] = {}
    results: dict[str, dict[str, list[dict]]] = {"distribution": {}, "trustreg": {}}
    load_start = os.getloadavg()
    print(f"machine: {bl.machine()}; load average {load_start[0]:.2f}", flush=True)
    try:
        print("generating blobs...", flush=True)
        src_big = bl.BlobSource(args.blob_mib * bl.MiB)
        src_mid = bl.BlobSource(args.concurrent_mib * bl.MiB)
        targets.append(Target(bl.start_distribution(tmp / "distribution")))
        keyless = KeylessSetup(tmp / "keyless") if KEYLESS in phases else None
        config = ENFORCE_CONFIG if keyless is None else {
            **keyless.config, "projects": {**ENFORCE_CONFIG["projects"], **keyless.config["projects"]}}
        targets.append(Target(bl.start_trustreg(tmp / "trustreg", config, workers=args.trustreg_workers,
                                                cwd=args.trustreg_src, profile=args.profile)))
        for t in targets:
            samplers[t.name] = bl.RssSampler(t.server.pid, 0.1).__enter__()
            t0 = time.monotonic()
            asyncio.run(setup_target(t, args, src_big, src_mid))
            if keyless is not None and t.name == "trustreg":
                asyncio.run(keyless.sign(t))
            extra = f"; enforced tag: {t.enforced_note}" if t.name == "trustreg" else ""
            print(f"setup {t.name}: {time.monotonic() - t0:.1f}s{extra}", flush=True)
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            for phase in phases:
                if phase in TRUSTREG_ONLY and BASELINE[phase] in phases:
                    continue  # measured together with its plain phase, below
                for t in order:
                    # trustreg's enforced phase runs interleaved with its plain one (see measure_pair)
                    pair = [phase] + [e for e in TRUSTREG_ONLY if BASELINE[e] == phase and e in phases]
                    if phase == KEYLESS:
                        measured = {phase: measure_keyless(t, rnd, args) if t.keyless else None}
                    elif len(pair) > 1 and t.signed:
                        measured = measure_pair(t, pair, rnd, args, src_big)
                    else:
                        measured = {phase: measure(t, phase, rnd, args, src_big)}
                    for p, res in measured.items():
                        if res is None:
                            continue
                        results[t.name].setdefault(p, []).append(res)
                        extra = f" p50 {res['p50_ms']:.2f} ms p99 {res['p99_ms']:.2f} ms" if "p50_ms" in res else ""
                        if "keyed" in res:
                            extra += f" (key-signed {res['keyed']['value']:,.1f} cpu {res['keyed']['cpu_s']:.2f}s)"
                        print(f"round {rnd + 1}/{args.rounds} {p:24s} {t.name:12s} {res['value']:10,.1f}{extra}"
                              f"  cpu {res['cpu_s']:.2f}s  hwm {res['hwm_mib']:.0f} MiB", flush=True)
    except BaseException:
        for t in targets:
            if t.server.proc.poll() is not None:
                print(f"{t.name} exited with {t.server.proc.returncode}; its log ends:\n{t.server.log_tail()}",
                      file=sys.stderr)
        raise
    finally:
        for t in targets:
            if t.name in samplers:
                samplers[t.name].__exit__(None, None, None)
            t.server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    trustreg = next((t for t in targets if t.name == "trustreg"), None)
    note = trustreg.enforced_note if trustreg else ""
    notes = {p: note for p in TRUSTREG_ONLY}
    summary = [r for r in summarise(results, notes) if r["phase"] in phases]
    peaks = {name: s.peak / bl.MiB for name, s in samplers.items()}
    out = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": bl.machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "enforced": note,
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "peak_rss_mib_sampled": peaks,
        "summary": summary,
        "raw": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print()
    print(table(summary))
    print()
    print("peak RSS over the whole run (sampled VmRSS): "
          + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()))
    print(f"{args.rounds} round(s), medians; {time.time() - started:.0f}s; 1-min load average "
          f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 cores: above ~2 means other "
          f"processes competed for CPU); results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
