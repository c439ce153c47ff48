"""An in-process storage driver: every object in a dict. For staging (content judged before it may be
written to the real store, see registry.proxy) and tests; nothing survives the process.

It keeps the whole contract of storage.base: writes replace an object in one assignment (atomic for
every reader, the event loop being single-threaded), a failed stream leaves the old object, and append
objects commit each append create-only at its offset.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from storage.base import PathNotFoundError, Stat, StorageDriver, check_append_position

CHUNK = 1 << 20


@dataclass
class _Append:
    parts: list[bytes] = field(default_factory=list)
    sealed: bool = False

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)


def _norm(key: str) -> str:
    return key.strip("/")


class MemoryDriver(StorageDriver):
    """Objects in a dict of key -> (bytes, mtime); append objects beside them."""

    name = "memory"

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._appends: dict[str, _Append] = {}

    def _object(self, key: str) -> tuple[bytes, float]:
        try:
            return self._objects[_norm(key)]
        except KeyError:
            raise PathNotFoundError(key) from None

    async def stat(self, key: str) -> Stat:
        data, modified = self._object(key)
        return Stat(len(data), modified)

    async def get(self, key: str) -> bytes:
        return self._object(key)[0]

    async def put(self, key: str, data: bytes) -> None:
        self._objects[_norm(key)] = (bytes(data), time.time())

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        if _norm(key) in self._objects:
            return False
        await self.put(key, data)
        return True

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        await self.put(key, bytes(data))
        return len(data)

    async def read_stream(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        data = self._object(key)[0]
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, CHUNK):
            yield data[start:min(start + CHUNK, end)]

    async def list(self, prefix: str) -> list[str]:
        base = _norm(prefix)
        lead = f"{base}/" if base else ""
        return sorted({k[len(lead):].split("/", 1)[0] for k in self._objects if k.startswith(lead)})

    async def walk(self, prefix: str) -> AsyncIterator[str]:
        lead = f"{_norm(prefix)}/" if _norm(prefix) else ""
        for key in [k for k in self._objects if k.startswith(lead)]:
            yield key

    async def move(self, src: str, dst: str) -> None:
        data, modified = self._object(src)
        self._objects[_norm(dst)] = (data, modified)
        del self._objects[_norm(src)]

    async def delete(self, key: str) -> None:
        base = _norm(key)
        for k in [k for k in self._objects if k == base or k.startswith(f"{base}/")]:
            del self._objects[k]

    # --- append objects ------------------------------------------------------------------------
    def _append_object(self, key: str) -> _Append:
        try:
            return self._appends[_norm(key)]
        except KeyError:
            raise PathNotFoundError(key) from None

    async def start_append(self, key: str) -> None:
        self._appends[_norm(key)] = _Append()

    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        obj = self._append_object(key)
        check_append_position(key, len(obj.parts), obj.size, obj.sealed, offset)
        part = bytearray()
        async for chunk in chunks:  # private until complete
            part += chunk
        obj = self._append_object(key)  # aborted meanwhile: PathNotFoundError
        check_append_position(key, len(obj.parts), obj.size, obj.sealed, offset)  # create-only at offset
        obj.parts.append(bytes(part))
        return obj.size

    async def append_size(self, key: str) -> int:
        return self._append_object(key).size

    async def seal_append(self, key: str) -> int:
        obj = self._append_object(key)
        obj.sealed = True
        return obj.size

    async def read_append(self, key: str) -> AsyncIterator[bytes]:
        for part in list(self._append_object(key).parts):
            yield part

    async def commit_append(self, key: str, dst: str) -> None:
        obj = self._append_object(key)
        if _norm(dst) not in self._objects:
            await self.put(dst, b"".join(obj.parts))

    async def abort_append(self, key: str) -> None:
        self._appends.pop(_norm(key), None)
