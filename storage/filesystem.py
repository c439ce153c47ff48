"""Filesystem storage driver: objects are files under a root directory.

Atomic writes go to a temp file in the destination directory, are fsynced, then renamed over the
destination (and the directory fsynced), so a killed process leaves the old or the new object. Blocking
file I/O runs in the default thread pool; blob reads are served by sendfile through `local_path`.
Append objects (upload sessions) are in `storage.filesystem_append`, the file primitives in
`storage.filesystem_io`; every file the driver writes is opened by this module's `open` or written by its
`_write_all` (appended parts too, through `_write_temp`).
"""

from __future__ import annotations

import os
import shutil
import stat as stat_module
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from storage.base import READ_CHUNK, PathNotFoundError, Stat, StorageError, StorageUnavailableError
from storage.filesystem_append import FilesystemAppendObjects
from storage.filesystem_io import (
    TEMP_PREFIX,
    create_only,
    flush_and_sync,
    fsync_dir,
    run_blocking,
    temp_beside,
    translate,
    unlink_quietly,
)
from storage.filesystem_io import write_all as _write_all  # the one name small writes go through

LIST_CACHE_SETTLE = 2.0  # seconds; see FilesystemDriver.list
LIST_CACHE_SIZE = 1024


class FilesystemDriver(FilesystemAppendObjects):
    """Objects as files under `root`; see the module docstring."""

    name = "filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._listings: OrderedDict[str, tuple[int, tuple[str, ...]]] = OrderedDict()

    # --- helpers -------------------------------------------------------------------------------
    def _path(self, key: str) -> str:
        if key and key[0] not in "./" and key[-1] != "/" and "/." not in key and "//" not in key and "\0" not in key:
            return f"{self.root}/{key}"  # the common, plainly safe shape: no dot-components, no empties
        parts = [p for p in key.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise StorageError(f"invalid key: {key!r}")
        path = os.path.join(self.root, *parts)
        if path != self.root and not path.startswith(self.root + os.sep):
            raise StorageError(f"key escapes the root: {key!r}")
        return path

    def _write_batches(self, batches: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        """Per batch: write and fsync every temp file, rename each over its destination, then fsync
        each destination directory, so the whole batch is durable before the next one starts.
        Plain `os` calls: this runs for every manifest push, and each syscall is a GIL round trip."""
        for batch in batches:
            staged: list[tuple[str, str]] = []
            try:
                for path, data in batch:
                    tmp = temp_beside(path)
                    try:
                        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                    except FileNotFoundError:
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                    staged.append((tmp, path))
                    try:
                        _write_all(fd, data)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                for tmp, path in staged:
                    os.replace(tmp, path)
            except BaseException:
                for tmp, _ in staged:  # the ones already renamed are gone: unlinking them is a no-op
                    unlink_quietly(tmp)
                raise
            for directory in dict.fromkeys(os.path.dirname(path) for path, _ in batch):
                fsync_dir(directory)

    # --- small objects -------------------------------------------------------------------------
    # Metadata reads run inline on the event loop: a page-cached read of a tiny file (tags, links,
    # manifests) costs less than a hop to the thread pool and back. Bulk I/O goes through the pool.
    async def stat(self, key: str) -> Stat:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e
        except OSError as e:
            raise translate(e) from e
        if not stat_module.S_ISREG(st.st_mode):
            raise PathNotFoundError(key)
        return Stat(size=st.st_size, modified=st.st_mtime)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e
        except OSError as e:
            raise translate(e) from e

    async def put(self, key: str, data: bytes) -> None:
        await run_blocking(self._write_batches, [[(self._path(key), data)]])

    async def put_many(self, batches: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        """One trip to the thread pool for all the batches (see `_write_batches`)."""
        paths = [[(self._path(key), data) for key, data in batch] for batch in batches]
        await run_blocking(self._write_batches, paths)

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """A fsynced temp file hard-linked to the key: link(2) fails if the name exists."""
        path = self._path(key)

        def create() -> bool:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not create_only(path, temp_beside(path), lambda fd: _write_all(fd, data)):
                return False
            fsync_dir(os.path.dirname(path))
            return True

        return await run_blocking(create)

    # --- streams -------------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        await run_blocking(os.makedirs, os.path.dirname(path), 0o777, True)
        tmp = temp_beside(path)
        try:
            written = await self._write_temp(tmp, chunks)
            await run_blocking(os.replace, tmp, path)
            await run_blocking(fsync_dir, os.path.dirname(path))
        except BaseException:
            unlink_quietly(tmp)
            raise
        return written

    async def _write_temp(self, tmp: str, chunks: AsyncIterable[bytes]) -> int:
        """Stream `chunks` into the new file `tmp`, fsynced and closed; returns the bytes written.
        The caller places `tmp` or removes it (streamed objects and appended parts alike)."""
        f = await run_blocking(open, tmp, "xb")
        written = 0
        try:
            async for chunk in chunks:
                await run_blocking(f.write, chunk)
                written += len(chunk)
            await run_blocking(flush_and_sync, f)
        finally:
            f.close()
        return written

    async def read_stream(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = await run_blocking(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e
        try:
            if offset:
                f.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await run_blocking(f.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def local_path(self, key: str) -> str | None:
        return self._path(key)

    # --- namespace -----------------------------------------------------------------------------
    async def list(self, prefix: str) -> list[str]:
        """Listings (tags, catalog) are cached per directory and revalidated by one inline `stat` of
        it: entries added, removed or replaced change the directory's mtime. Only a directory whose
        mtime is already more than LIST_CACHE_SETTLE seconds old is cached, so a later change can never
        carry the same (coarse-grained) mtime as the cached listing."""
        path = self._path(prefix)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        cached = self._listings.get(path)
        if cached is not None and cached[0] == st.st_mtime_ns:
            self._listings.move_to_end(path)
            return list(cached[1])

        def listdir() -> list[str]:
            try:
                return sorted(n for n in os.listdir(path) if not n.startswith(TEMP_PREFIX))
            except (FileNotFoundError, NotADirectoryError):
                return []

        names = await run_blocking(listdir)
        if time.time() - st.st_mtime > LIST_CACHE_SETTLE:
            self._listings[path] = (st.st_mtime_ns, tuple(names))
            if len(self._listings) > LIST_CACHE_SIZE:
                self._listings.popitem(last=False)
        return names

    async def walk(self, prefix: str) -> AsyncIterator[str]:
        base = self._path(prefix)

        def collect() -> list[str]:
            keys = []
            for dirpath, _dirs, files in os.walk(base):
                rel = os.path.relpath(dirpath, self.root)
                for name in files:
                    keys.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
            return keys

        for key in await run_blocking(collect):
            yield key

    async def move(self, src: str, dst: str) -> None:
        s, d = self._path(src), self._path(dst)

        def do_move() -> None:
            os.makedirs(os.path.dirname(d), exist_ok=True)
            os.replace(s, d)
            fsync_dir(os.path.dirname(d))

        try:
            await run_blocking(do_move)
        except FileNotFoundError as e:
            raise PathNotFoundError(src) from e

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            if os.path.isdir(path) and not os.path.islink(path):
                # Rename first so a concurrent reader never sees a half-deleted tree.
                doomed = temp_beside(path)
                try:
                    os.rename(path, doomed)
                except FileNotFoundError:
                    return
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                unlink_quietly(path)

        await run_blocking(remove)

    # --- lifecycle -----------------------------------------------------------------------------
    async def check(self) -> None:
        def probe() -> None:
            try:
                os.makedirs(self.root, exist_ok=True)
                path = os.path.join(self.root, f"{TEMP_PREFIX}probe-{uuid.uuid4().hex}")
                with open(path, "wb"):
                    pass
                os.unlink(path)
            except OSError as e:
                raise StorageUnavailableError(f"storage root {self.root} is not usable: {e.strerror}") from e

        await run_blocking(probe)
