"""Peak RSS of a trustreg server while it takes and serves a 1 GiB blob (issues 2, 3 and 8).

Starts `python -m registry.cli serve` on loopback with fresh storage — the filesystem driver, then S3
(moto in server mode, a separate process: tests/s3server.start_moto, so only trustreg's memory
counts) — and, through HTTP, pushes a 1 GiB blob monolithically (one PUT), pushes another in 8 MiB
PATCHes, and pulls both back (the pulls are checked byte for byte by sha256). The server's memory is
watched two ways per phase: the kernel's peak (VmHWM, reset before each phase through
/proc/PID/clear_refs) and VmRSS sampled every 20 ms.

    python benchmarks/memory.py                          # 1 GiB on filesystem and S3
    python benchmarks/memory.py --size-mib 256 --drivers filesystem   # quicker

Exits 1 if a phase peaks above --fs-limit-mib (150) on the filesystem or --s3-limit-mib (200) on S3,
or if a pull returns different bytes; writes JSON to --out if given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlib as bl  # noqa: E402

REPO_NAME = "bench/memory"


async def phases(server: bl.Server, src: bl.BlobSource, chunk: int, timeout: float) -> list[dict]:
    mono = src.blob(f"memory-mono-{server.port}")
    chunked = src.blob(f"memory-chunked-{server.port}")
    steps = [
        ("push monolithic", lambda s: bl.push_monolithic(s, server.url, REPO_NAME, mono), mono),
        ("push chunked", lambda s: bl.push_chunked(s, server.url, REPO_NAME, chunked, chunk), chunked),
        ("pull monolithic", lambda s: bl.pull(s, server.url, REPO_NAME, mono.digest, mono.size, verify=True), mono),
        ("pull chunked",
         lambda s: bl.pull(s, server.url, REPO_NAME, chunked.digest, chunked.size, verify=True), chunked),
    ]
    out = []
    async with bl.session(timeout=timeout) as s:
        for name, step, blob in steps:
            bl.reset_hwm(server.pid)
            before = bl.rss_bytes(server.pid)
            with bl.RssSampler(server.pid, 0.02) as sampler:
                t0 = time.monotonic()
                await step(s)
                elapsed = time.monotonic() - t0
            peak = max(sampler.peak, bl.hwm_bytes(server.pid))
            out.append({
                "phase": name,
                "seconds": round(elapsed, 2),
                "mib_per_s": round(blob.size / bl.MiB / elapsed, 1),
                "rss_before_mib": round(before / bl.MiB, 1),
                "peak_rss_mib": round(peak / bl.MiB, 1),
                "sampled_peak_mib": round(sampler.peak / bl.MiB, 1),
            })
            print(f"  {name:16s} {elapsed:6.1f}s {blob.size / bl.MiB / elapsed:7.1f} MiB/s   RSS before "
                  f"{before / bl.MiB:5.0f} MiB, peak {peak / bl.MiB:5.0f} MiB", flush=True)
    return out


def run_driver(driver: str, args: argparse.Namespace, src: bl.BlobSource, tmp: Path) -> dict:
    stop_moto = None
    storage = None
    try:
        if driver == "s3":
            from tests.s3server import create_bucket, s3_config, start_moto

            endpoint, stop_moto = start_moto()
            storage = {"s3": s3_config(endpoint, create_bucket(endpoint), part_size=args.part_mib * bl.MiB)}
        server = bl.start_trustreg(tmp / driver, {"trust": {"enabled": False}}, storage=storage)
        try:
            baseline = bl.rss_bytes(server.pid)
            print(f"{driver}: trustreg pid {server.pid}, RSS after start {baseline / bl.MiB:.0f} MiB", flush=True)
            results = asyncio.run(phases(server, src, args.chunk_mib * bl.MiB, args.timeout))
        finally:
            server.stop()
    finally:
        if stop_moto is not None:
            stop_moto()
    limit = args.fs_limit_mib if driver == "filesystem" else args.s3_limit_mib
    peak = max(r["peak_rss_mib"] for r in results)
    return {"driver": driver, "baseline_rss_mib": round(baseline / bl.MiB, 1), "peak_rss_mib": peak,
            "limit_mib": limit, "ok": peak < limit, "phases": results}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="blob size (default 1024)")
    p.add_argument("--chunk-mib", type=int, default=8, help="PATCH size of the chunked push (default 8)")
    p.add_argument("--part-mib", type=int, default=16, help="S3 multipart part size (default 16)")
    p.add_argument("--drivers", default="filesystem,s3", help="comma-separated: filesystem,s3")
    p.add_argument("--fs-limit-mib", type=float, default=150)
    p.add_argument("--s3-limit-mib", type=float, default=200)
    p.add_argument("--timeout", type=float, default=900, help="upper bound of each phase, seconds")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args()
    print(f"generating {args.size_mib} MiB...", flush=True)
    src = bl.BlobSource(args.size_mib * bl.MiB)
    tmp = Path(tempfile.mkdtemp(prefix="trustreg-memory-"))
    report = {"machine": bl.machine(), "size_mib": args.size_mib, "chunk_mib": args.chunk_mib, "drivers": []}
    failed = False
    try:
        for driver in args.drivers.split(","):
            try:
                r = run_driver(driver, args, src, tmp)
            except Exception as e:  # a failed push/pull or a dead server is a failure, reported as such
                print(f"{driver}: FAILED: {e}", flush=True)
                report["drivers"].append({"driver": driver, "ok": False, "error": str(e)})
                failed = True
                continue
            report["drivers"].append(r)
            failed |= not r["ok"]
            print(f"{driver}: peak RSS {r['peak_rss_mib']:.0f} MiB (limit {r['limit_mib']:.0f} MiB): "
                  f"{'PASS' if r['ok'] else 'FAIL'}", flush=True)
    finally:
        bl.cleanup(tmp)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    print("memory:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
