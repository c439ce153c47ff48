"""A driver wrapper that records the latency of every storage operation (Prometheus)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import Histogram

from storage.base import Stat, StorageDriver

STORAGE_LATENCY = Histogram(
    "trustreg_storage_operation_seconds",
    "Latency of storage driver operations",
    ["driver", "operation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)


class InstrumentedDriver(StorageDriver):
    """Delegates to `inner`, timing each call; streams are timed until fully consumed."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self._observers: dict[str, Callable[[float], None]] = {}

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            observe = self._observers.get(operation)
            if observe is None:  # bind the labelled child once: `.labels()` costs microseconds per call
                observe = self._observers[operation] = STORAGE_LATENCY.labels(self.name, operation).observe
            observe(time.perf_counter() - started)

    async def stat(self, key: str) -> Stat:
        with self._timed("stat"):
            return await self.inner.stat(key)

    async def get(self, key: str) -> bytes:
        with self._timed("get"):
            return await self.inner.get(key)

    async def put(self, key: str, data: bytes) -> None:
        with self._timed("put"):
            await self.inner.put(key, data)

    async def put_many(self, batches: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        with self._timed("put_many"):
            await self.inner.put_many(batches)

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        with self._timed("put_if_absent"):
            return await self.inner.put_if_absent(key, data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        with self._timed("put_stream"):
            return await self.inner.put_stream(key, chunks)

    async def read_stream(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        with self._timed("read_stream"):
            async for chunk in self.inner.read_stream(key, offset, length):
                yield chunk

    async def local_path(self, key: str) -> str | None:
        return await self.inner.local_path(key)

    async def redirect_url(self, key: str) -> str | None:
        return await self.inner.redirect_url(key)

    async def list(self, prefix: str) -> list[str]:
        with self._timed("list"):
            return await self.inner.list(prefix)

    async def walk(self, prefix: str) -> AsyncIterator[str]:
        with self._timed("walk"):
            async for key in self.inner.walk(prefix):
                yield key

    async def move(self, src: str, dst: str) -> None:
        with self._timed("move"):
            await self.inner.move(src, dst)

    async def delete(self, key: str) -> None:
        with self._timed("delete"):
            await self.inner.delete(key)

    async def start_append(self, key: str) -> None:
        with self._timed("start_append"):
            await self.inner.start_append(key)

    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        with self._timed("append"):
            return await self.inner.append(key, chunks, offset)

    async def append_size(self, key: str) -> int:
        with self._timed("append_size"):
            return await self.inner.append_size(key)

    async def seal_append(self, key: str) -> int:
        with self._timed("seal_append"):
            return await self.inner.seal_append(key)

    async def read_append(self, key: str) -> AsyncIterator[bytes]:
        with self._timed("read_append"):
            async for chunk in self.inner.read_append(key):
                yield chunk

    async def commit_append(self, key: str, dst: str) -> None:
        with self._timed("commit_append"):
            await self.inner.commit_append(key, dst)

    async def abort_append(self, key: str) -> None:
        with self._timed("abort_append"):
            await self.inner.abort_append(key)

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None:
        await self.inner.close()
