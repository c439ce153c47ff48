"""The storage driver contract: a dumb, streaming, async key/value store.

Keys are `/`-separated relative paths built only by trustreg itself (names and digests are validated
before they become keys). Registry semantics (blobs, links, tags, uploads, trust data) live above the
driver in `storage.registry_store`, written once for every driver.

Rules every driver keeps:
- `put`, `put_many`, `put_stream` and `move` are atomic: a reader sees the old object or the new one, never a torn
  one, even if the process is killed mid-write.
- Nothing is buffered whole in memory except objects read with `get` (small metadata only).
- A missing key raises `PathNotFoundError`; an unreachable backend raises `StorageUnavailableError`.
- Append objects (upload sessions) are written with `start_append`/`append`, fenced with `seal_append`
  and placed with `commit_append`; their state lives in the backend, so another process sharing the
  same backend can continue an append another one began. Each `append` writes its bytes to a private
  part and commits it create-only at its offset, so two appends at one offset never both land, a
  sealed session takes no further part, and no writer ever holds a handle on committed content.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")
READ_CHUNK = 1 << 20  # bytes per chunk of a streamed read


class StorageError(Exception):
    """Base class of driver errors."""


class PathNotFoundError(StorageError):
    """The key does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"not found: {key}")
        self.key = key


class OffsetMismatchError(StorageError):
    """An append did not start where the append object currently ends."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"append to {key} at offset {expected}, object has {actual} bytes")
        self.expected = expected
        self.actual = actual


MAX_APPEND_PARTS = 10_000  # appends per append object (each append lists the parts before it)


class TooManyPartsError(StorageError):
    """The append object already has MAX_APPEND_PARTS parts."""


class AppendSealedError(StorageError):
    """The append object was sealed (its upload finished): it takes no more bytes."""

    def __init__(self, key: str) -> None:
        super().__init__(f"append object {key} is sealed")
        self.key = key


def check_append_position(key: str, parts: int, size: int, sealed: bool, offset: int) -> None:
    """Whether an append at `offset` may start on an append object of `parts` parts and `size` bytes:
    AppendSealedError, OffsetMismatchError or TooManyPartsError if not (both drivers' precondition)."""
    if sealed:
        raise AppendSealedError(key)
    if size != offset:
        raise OffsetMismatchError(key, offset, size)
    if parts >= MAX_APPEND_PARTS:
        raise TooManyPartsError(f"{key!r} has {parts} parts")


class StorageUnavailableError(StorageError):
    """The backend cannot be reached or refused the operation for a reason not ours (503)."""


class StorageFullError(StorageError):
    """The backend has no space left (ENOSPC); nothing was half-written."""


@dataclass(frozen=True)
class Stat:
    """Size in bytes and last modification time (Unix seconds) of an object."""

    size: int
    modified: float


@dataclass(frozen=True)
class AppendChain(Generic[P]):
    """What an append object holds, as both drivers store it: parts named by their start offset, each
    starting where the one before ends, and the seal as an empty part after the last."""

    parts: list[tuple[P, int]]  # (where the part is, its size), in order
    size: int
    sealed: bool

    @classmethod
    def follow(cls, part_at: Callable[[int], tuple[P, int] | None]) -> AppendChain[P]:
        """Follow the parts from offset 0; `part_at(offset)` is the part committed there and its size,
        or None. A part off the chain is never reached (parts are only ever committed at the end)."""
        parts: list[tuple[P, int]] = []
        size = 0
        while (found := part_at(size)) is not None:
            if found[1] == 0:
                return cls(parts, size, True)
            parts.append(found)
            size += found[1]
        return cls(parts, size, False)

    def check_append(self, key: str, offset: int) -> None:
        """Whether an append at `offset` may start (see check_append_position)."""
        check_append_position(key, len(self.parts), self.size, self.sealed, offset)

    def taken(self, key: str, offset: int) -> StorageError:
        """The error of an append whose part found `offset` taken (read from the chain after it)."""
        return AppendSealedError(key) if self.sealed else OffsetMismatchError(key, offset, self.size)

    def sealed_parts(self, key: str) -> list[tuple[P, int]]:
        """The parts of a sealed append object; StorageError if it is not sealed."""
        if not self.sealed:
            raise StorageError(f"append object {key!r} is not sealed")
        return self.parts


class StorageDriver(abc.ABC):
    """Async streaming key/value store. See the module docstring for the rules."""

    name: str = "abstract"

    # --- small objects -------------------------------------------------------------------------
    @abc.abstractmethod
    async def stat(self, key: str) -> Stat:
        """Size and mtime of an object; raises PathNotFoundError."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """Whole content of a small object; raises PathNotFoundError."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Atomically create or replace an object with `data`."""

    async def put_many(self, batches: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        """Atomically write small objects batch by batch: every object of a batch is durable before
        any object of a later batch appears (a manifest's content before the tag naming it). Within
        a batch the objects may appear in any order. Drivers override this to save round trips."""
        for batch in batches:
            await asyncio.gather(*(self.put(key, data) for key, data in batch))

    @abc.abstractmethod
    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object exists at `key`, atomically even against other
        processes sharing the backend; True if this call created it, False if one was there."""

    # --- streams -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Atomically create or replace an object from a stream; returns the bytes written."""

    @abc.abstractmethod
    def read_stream(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (default: to the end) from `offset`; raises PathNotFoundError when
        iterated if the key does not exist."""

    async def local_path(self, key: str) -> str | None:
        """A filesystem path for sendfile, or None if the driver has none."""
        return None

    async def redirect_url(self, key: str) -> str | None:
        """A short-lived URL clients may fetch the object from directly, or None."""
        return None

    # --- namespace -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def list(self, prefix: str) -> list[str]:
        """Sorted names of the direct children (objects and "directories") under `prefix`.
        Returns [] when nothing exists under it."""

    @abc.abstractmethod
    def walk(self, prefix: str) -> AsyncIterator[str]:
        """Every object key under `prefix`, recursively (for gc and check; order unspecified)."""

    @abc.abstractmethod
    async def move(self, src: str, dst: str) -> None:
        """Atomically move an object, replacing `dst`; raises PathNotFoundError for `src`."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete an object, or everything under `key` as a prefix. Missing keys are not an error."""

    # --- append objects (upload sessions) ------------------------------------------------------
    @abc.abstractmethod
    async def start_append(self, key: str) -> None:
        """Create an empty append object."""

    @abc.abstractmethod
    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        """Append a stream at `offset` (must equal the current size, else OffsetMismatchError);
        returns the new size. The bytes go to a private part first and are committed create-only at
        `offset` once complete, so of two appends at one offset at most one lands (the other gets
        OffsetMismatchError) and a failed stream leaves nothing. Raises AppendSealedError once the
        object is sealed, TooManyPartsError past MAX_APPEND_PARTS appends and PathNotFoundError if no
        append object exists."""

    @abc.abstractmethod
    async def append_size(self, key: str) -> int:
        """Bytes committed so far; raises PathNotFoundError if no append object exists."""

    @abc.abstractmethod
    async def seal_append(self, key: str) -> int:
        """Fence the append object: no append commits after this returns, in this process or any
        other sharing the backend (the seal is itself committed create-only at the end). Returns the
        final size; sealing twice is harmless. Raises PathNotFoundError if no append object exists."""

    @abc.abstractmethod
    def read_append(self, key: str) -> AsyncIterator[bytes]:
        """Stream the committed content of a sealed append object."""

    @abc.abstractmethod
    async def commit_append(self, key: str, dst: str) -> None:
        """Atomically place the content of a sealed append object at `dst`, as a new object no
        writer holds (a `dst` that already exists is kept as it is). The append object remains
        until `abort_append`."""

    @abc.abstractmethod
    async def abort_append(self, key: str) -> None:
        """Discard an append object and any backend state it holds. Missing is not an error."""

    # --- lifecycle -----------------------------------------------------------------------------
    async def check(self) -> None:
        """Raise StorageUnavailableError if the backend is not usable (called at start and by
        readiness probes)."""

    async def close(self) -> None:
        """Release clients, pools and files."""
