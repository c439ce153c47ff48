"""Memory benchmark of the S3 driver: push a large stream through append + seal, place it by
server-side copy (commit_append), read it back with read_stream, and check the peak RSS of this process.

moto's server mode runs in a separate process (tests/s3server.py), so only the driver's memory counts.

    python benchmarks/s3_memory.py                 # 1 GiB, 16 MiB parts, limit 200 MiB
    python benchmarks/s3_memory.py --size-mib 256  # quicker

Exits 1 if the peak RSS exceeds the limit or the bytes read back differ.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import sys
import threading
import time
from collections.abc import AsyncIterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from storage.s3 import S3Driver  # noqa: E402
from tests.s3server import create_bucket, s3_config, start_moto  # noqa: E402

MiB = 1 << 20


class PeakRss:
    """Samples VmRSS of this process in a background thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


async def generate(n: int, chunk: int, hasher: hashlib._Hash) -> AsyncIterator[bytes]:
    """`n` random bytes in `chunk`-sized pieces (like an aiohttp request body), hashed as they go."""
    sent = 0
    while sent < n:
        data = os.urandom(min(chunk, n - sent))
        hasher.update(data)
        sent += len(data)
        yield data


async def run(args: argparse.Namespace) -> int:
    size = args.size_mib * MiB
    endpoint, stop = start_moto()
    try:
        bucket = create_bucket(endpoint)
        driver = S3Driver.from_config(s3_config(endpoint, bucket, part_size=args.part_mib * MiB))
        baseline = PeakRss.current()
        written = hashlib.sha256()
        read = hashlib.sha256()
        with PeakRss() as rss:
            t0 = time.monotonic()
            key = "repositories/bench/_uploads/u1/data"
            await driver.start_append(key)
            offset = 0
            while offset < size:
                n = min(args.patch_mib * MiB, size - offset)
                offset = await driver.append(key, generate(n, args.chunk_kib * 1024, written), offset)
            await driver.seal_append(key)
            await driver.commit_append(key, "blobs/sha256/aa/bench/data")
            await driver.abort_append(key)
            t1 = time.monotonic()
            got = 0
            async for chunk in driver.read_stream("blobs/sha256/aa/bench/data"):
                read.update(chunk)
                got += len(chunk)
            t2 = time.monotonic()
        await driver.close()
    finally:
        stop()
    ok_bytes = got == size and read.digest() == written.digest()
    ok_rss = rss.peak < args.limit_mib * MiB
    print(
        f"size={size // MiB} MiB part={args.part_mib} MiB patch={args.patch_mib} MiB chunk={args.chunk_kib} KiB\n"
        f"push {t1 - t0:.1f}s ({size / MiB / (t1 - t0):.0f} MiB/s), pull {t2 - t1:.1f}s "
        f"({size / MiB / (t2 - t1):.0f} MiB/s)\n"
        f"RSS baseline {baseline / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB "
        f"(ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB), "
        f"limit {args.limit_mib} MiB\n"
        f"content {'identical' if ok_bytes else 'DIFFERS'}; {'PASS' if ok_bytes and ok_rss else 'FAIL'}"
    )
    return 0 if ok_bytes and ok_rss else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--part-mib", type=int, default=16)
    p.add_argument("--patch-mib", type=int, default=100, help="bytes per append call (PATCH)")
    p.add_argument("--chunk-kib", type=int, default=64, help="size of each chunk in the stream")
    p.add_argument("--limit-mib", type=int, default=200)
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
