"""Filesystem storage driver: objects are files under a root directory.

Atomic writes go to a temp file in the destination directory, are fsynced, then renamed over the
destination (and the directory fsynced), so a killed process leaves the old or the new object. Blocking
file I/O runs in the default thread pool; blob reads are served by sendfile through `local_path`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat as stat_module
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import TypeVar

from storage.base import (
    AppendSealedError,
    OffsetMismatchError,
    PathNotFoundError,
    Stat,
    StorageDriver,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
    check_append_position,
)

T = TypeVar("T")
READ_CHUNK = 1 << 20
LIST_CACHE_SETTLE = 2.0  # seconds; see FilesystemDriver.list
LIST_CACHE_SIZE = 1024
TEMP_PREFIX = ".tmp-"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemDriver(StorageDriver):
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

    @staticmethod
    async def _run(fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except OSError as e:
            translated = _translate(e)
            if translated is e:
                raise
            raise translated from e

    def _temp_for(self, path: str) -> str:
        return os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{uuid.uuid4().hex}")

    def _write_batches(self, batches: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        """Per batch: write and fsync every temp file, rename each over its destination, then fsync
        each destination directory, so the whole batch is durable before the next one starts.
        Plain `os` calls: this runs for every manifest push, and each syscall is a GIL round trip."""
        for batch in batches:
            staged: list[tuple[str, str]] = []
            try:
                for path, data in batch:
                    tmp = self._temp_for(path)
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
                    _unlink_quietly(tmp)
                raise
            for directory in dict.fromkeys(os.path.dirname(path) for path, _ in batch):
                _fsync_dir(directory)

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
            raise _translate(e) from e
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
            raise _translate(e) from e

    async def put(self, key: str, data: bytes) -> None:
        await self._run(self._write_batches, [[(self._path(key), data)]])

    async def put_many(self, batches: Sequence[Sequence[tuple[str, bytes]]]) -> None:
        """One trip to the thread pool for all the batches (see `_write_batches`)."""
        paths = [[(self._path(key), data) for key, data in batch] for batch in batches]
        await self._run(self._write_batches, paths)

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """A fsynced temp file hard-linked to the key: link(2) fails if the name exists."""
        path = self._path(key)

        def create() -> bool:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not _create_only(path, self._temp_for(path), lambda fd: _write_all(fd, data)):
                return False
            _fsync_dir(os.path.dirname(path))
            return True

        return await self._run(create)

    # --- streams -------------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        await self._run(os.makedirs, os.path.dirname(path), 0o777, True)
        tmp = self._temp_for(path)
        f = await self._run(open, tmp, "wb")
        written = 0
        try:
            async for chunk in chunks:
                await self._run(f.write, chunk)
                written += len(chunk)
            await self._run(_flush_and_sync, f)
            f.close()
            await self._run(os.replace, tmp, path)
            await self._run(_fsync_dir, os.path.dirname(path))
        except BaseException:
            f.close()
            _unlink_quietly(tmp)
            raise
        return written

    async def read_stream(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = await self._run(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e
        try:
            if offset:
                f.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await self._run(f.read, size)
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

        names = await self._run(listdir)
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

        for key in await self._run(collect):
            yield key

    async def move(self, src: str, dst: str) -> None:
        s, d = self._path(src), self._path(dst)

        def do_move() -> None:
            os.makedirs(os.path.dirname(d), exist_ok=True)
            os.replace(s, d)
            _fsync_dir(os.path.dirname(d))

        try:
            await self._run(do_move)
        except FileNotFoundError as e:
            raise PathNotFoundError(src) from e

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            if os.path.isdir(path) and not os.path.islink(path):
                # Rename first so a concurrent reader never sees a half-deleted tree.
                doomed = self._temp_for(path)
                try:
                    os.rename(path, doomed)
                except FileNotFoundError:
                    return
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                _unlink_quietly(path)

        await self._run(remove)

    # --- append objects ------------------------------------------------------------------------
    # An append object is a directory of parts, each named by its start offset (20 digits). An append
    # streams into a private temp file there, fsyncs and closes it, then hard-links it to the name of
    # its offset: link(2) fails if the name exists, so one offset takes one part, and no request keeps
    # a handle on a committed part. The seal is an empty part linked at the end: a later append finds
    # its offset taken, and the size never passes it. Abort renames the directory away at once.
    # Listing the parts costs a stat each, so it runs in the thread pool (their number is capped).
    def _chain(self, path: str, key: str) -> tuple[list[tuple[str, int]], int, bool]:
        """The committed parts (path, size) in order, the size and whether the object is sealed."""
        try:
            names = sorted(n for n in os.listdir(path) if n.isdigit())
            parts: list[tuple[str, int]] = []
            size = 0
            for name in names:
                if int(name) != size:
                    continue  # not on the chain (cannot happen: parts are committed at the end only)
                part = f"{path}/{name}"
                n = os.stat(part).st_size
                if n == 0:
                    return parts, size, True
                parts.append((part, n))
                size += n
            return parts, size, False
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e

    def _link_part(self, tmp: str, path: str, offset: int, key: str) -> None:
        """Commit `tmp` as the part at `offset`, create-only."""
        try:
            os.link(tmp, f"{path}/{offset:020d}")
        except FileExistsError:
            _, size, sealed = self._chain(path, key)
            raise AppendSealedError(key) if sealed else OffsetMismatchError(key, offset, size) from None
        except FileNotFoundError as e:
            raise PathNotFoundError(key) from e

    async def start_append(self, key: str) -> None:
        path = self._path(key)
        await self.delete(key)
        await self._run(os.makedirs, path)

    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        path = self._path(key)
        parts, size, sealed = await self._run(self._chain, path, key)
        check_append_position(key, len(parts), size, sealed, offset)
        tmp = self._temp_for(f"{path}/part")
        try:
            f = await self._run(open, tmp, "xb")
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e
        written = 0
        try:
            try:
                async for chunk in chunks:
                    await self._run(f.write, chunk)
                    written += len(chunk)
                if written:
                    await self._run(_flush_and_sync, f)
            finally:
                f.close()
            if written:
                await self._run(self._link_part, tmp, path, offset, key)
                await self._run(_fsync_dir, path)
        finally:
            _unlink_quietly(tmp)
        return offset + written

    async def append_size(self, key: str) -> int:
        return (await self._run(self._chain, self._path(key), key))[1]

    async def seal_append(self, key: str) -> int:
        path = self._path(key)

        def seal() -> int:
            while True:
                _, size, sealed = self._chain(path, key)
                if sealed:
                    return size
                tmp = self._temp_for(f"{path}/seal")
                try:
                    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
                    os.link(tmp, f"{path}/{size:020d}")
                    return size
                except FileExistsError:
                    continue  # an append landed first: seal after it
                except FileNotFoundError as e:
                    raise PathNotFoundError(key) from e
                finally:
                    _unlink_quietly(tmp)

        return await self._run(seal)

    def _sealed_parts(self, key: str) -> list[tuple[str, int]]:
        parts, _, sealed = self._chain(self._path(key), key)
        if not sealed:
            raise StorageError(f"append object {key!r} is not sealed")
        return parts

    async def read_append(self, key: str) -> AsyncIterator[bytes]:
        for part, _ in self._sealed_parts(key):
            try:
                f = await self._run(open, part, "rb")
            except FileNotFoundError as e:  # ended meanwhile (finished or cancelled by another request)
                raise PathNotFoundError(key) from e
            try:
                while chunk := await self._run(f.read, READ_CHUNK):
                    yield chunk
            finally:
                f.close()

    async def commit_append(self, key: str, dst: str) -> None:
        """One part is hard-linked into place (no copy); several are concatenated in the kernel
        (copy_file_range) into a temp file that is then linked. Either way create-only."""
        target = self._path(dst)

        def commit() -> None:
            parts = self._sealed_parts(key)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if len(parts) == 1:
                try:
                    os.link(parts[0][0], target)
                except FileExistsError:
                    return
            else:
                def concatenate(fd: int) -> None:
                    for part, size in parts:
                        _copy_into(part, size, fd)

                if not _create_only(target, self._temp_for(target), concatenate):
                    return
            os.utime(target)  # the blob's age starts now (the garbage collector's grace period)
            _fsync_dir(os.path.dirname(target))

        try:
            await self._run(commit)
        except FileNotFoundError as e:
            raise PathNotFoundError(key) from e

    async def abort_append(self, key: str) -> None:
        await self.delete(key)

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

        await self._run(probe)


def _create_only(path: str, tmp: str, write: Callable[[int], None]) -> bool:
    """Write a fsynced temp file with `write(fd)` and hard-link it to `path`: False (nothing changed)
    if `path` exists, since link(2) never replaces. The temp file is always removed."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            write(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        _unlink_quietly(tmp)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_into(path: str, size: int, fd: int) -> None:
    """Append `size` bytes of the file at `path` to `fd` (in the kernel where it can)."""
    src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        left = size
        while left:
            try:
                n = os.copy_file_range(src, fd, left)
            except OSError as e:  # a filesystem without it (EXDEV, ENOSYS, EINVAL): plain copy
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                data = os.read(src, min(left, READ_CHUNK))
                _write_all(fd, data)
                n = len(data)
            if n == 0:
                raise StorageError(f"part {path} is shorter than its {size} bytes")
            left -= n
    finally:
        os.close(src)


def _flush_and_sync(f) -> None:  # type: ignore[no-untyped-def]
    f.flush()
    os.fsync(f.fileno())


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _translate(e: OSError) -> Exception:
    if e.errno == errno.ENOSPC:
        return StorageFullError("no space left on the storage device")
    if e.errno in (errno.EACCES, errno.EROFS, errno.EIO):
        return StorageUnavailableError(f"storage error: {e.strerror}")
    return e
