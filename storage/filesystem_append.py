"""Append objects (upload sessions) of the filesystem driver.

An append object is a directory of parts, each named by its start offset (20 digits). An append streams
into a private temp file there, fsyncs and closes it, then hard-links it to the name of its offset:
link(2) fails if the name exists, so one offset takes one part, and no request keeps a handle on a
committed part. The seal is an empty part linked at the end: a later append finds its offset taken, and
the size never passes it. Commit links a single part into place or concatenates several in the kernel
(copy_file_range); abort renames the directory away at once. Listing the parts costs a stat each, so it
runs in the thread pool (their number is capped).
"""

from __future__ import annotations

import abc
import errno
import os
from collections.abc import AsyncIterable, AsyncIterator

from storage.base import READ_CHUNK, AppendChain, PathNotFoundError, StorageDriver, StorageError
from storage.filesystem_io import create_only, fsync_dir, run_blocking, temp_beside, unlink_quietly, write_all


class FilesystemAppendObjects(StorageDriver):
    """The append-object half of FilesystemDriver, which maps keys to paths and writes temp files."""

    @abc.abstractmethod
    def _path(self, key: str) -> str:
        """The file path of `key` under the root; StorageError for a key that would leave it."""

    @abc.abstractmethod
    async def _write_temp(self, tmp: str, chunks: AsyncIterable[bytes]) -> int:
        """Stream `chunks` into the new file `tmp`, fsynced and closed; returns the bytes written."""

    def _chain(self, path: str, key: str) -> AppendChain[str]:
        """The committed parts (path, size) of the append object in directory `path`."""
        try:
            names = set(os.listdir(path))

            def part_at(offset: int) -> tuple[str, int] | None:
                name = _part_name(offset)
                return (f"{path}/{name}", os.stat(f"{path}/{name}").st_size) if name in names else None

            return AppendChain.follow(part_at)
        except (FileNotFoundError, NotADirectoryError) as e:
            raise PathNotFoundError(key) from e

    def _link_part(self, tmp: str, path: str, offset: int, key: str) -> None:
        """Commit `tmp` as the part at `offset`, create-only."""
        try:
            os.link(tmp, f"{path}/{_part_name(offset)}")
        except FileExistsError:
            raise self._chain(path, key).taken(key, offset) from None
        except FileNotFoundError as e:
            raise PathNotFoundError(key) from e

    async def start_append(self, key: str) -> None:
        path = self._path(key)
        await self.delete(key)
        await run_blocking(os.makedirs, path)

    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        path = self._path(key)
        (await run_blocking(self._chain, path, key)).check_append(key, offset)
        tmp = temp_beside(f"{path}/part")
        try:
            try:
                written = await self._write_temp(tmp, chunks)
            except (FileNotFoundError, NotADirectoryError) as e:  # the session ended meanwhile
                raise PathNotFoundError(key) from e
            if written:
                await run_blocking(self._link_part, tmp, path, offset, key)
                await run_blocking(fsync_dir, path)
        finally:
            unlink_quietly(tmp)
        return offset + written

    async def append_size(self, key: str) -> int:
        return (await run_blocking(self._chain, self._path(key), key)).size

    async def seal_append(self, key: str) -> int:
        path = self._path(key)

        def seal() -> int:
            while True:
                chain = self._chain(path, key)
                if chain.sealed:
                    return chain.size
                tmp = temp_beside(f"{path}/seal")
                try:
                    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
                    os.link(tmp, f"{path}/{_part_name(chain.size)}")
                    return chain.size
                except FileExistsError:
                    continue  # an append landed first: seal after it
                except FileNotFoundError as e:
                    raise PathNotFoundError(key) from e
                finally:
                    unlink_quietly(tmp)

        return await run_blocking(seal)

    def _sealed_parts(self, key: str) -> list[tuple[str, int]]:
        return self._chain(self._path(key), key).sealed_parts(key)

    async def read_append(self, key: str) -> AsyncIterator[bytes]:
        for part, _ in self._sealed_parts(key):
            try:
                f = await run_blocking(open, part, "rb")
            except FileNotFoundError as e:  # ended meanwhile (finished or cancelled by another request)
                raise PathNotFoundError(key) from e
            try:
                while chunk := await run_blocking(f.read, READ_CHUNK):
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

                if not create_only(target, temp_beside(target), concatenate):
                    return
            os.utime(target)  # the blob's age starts now (the garbage collector's grace period)
            fsync_dir(os.path.dirname(target))

        try:
            await run_blocking(commit)
        except FileNotFoundError as e:
            raise PathNotFoundError(key) from e

    async def abort_append(self, key: str) -> None:
        await self.delete(key)


def _part_name(offset: int) -> str:
    return f"{offset:020d}"


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
                write_all(fd, data)
                n = len(data)
            if n == 0:
                raise StorageError(f"part {path} is shorter than its {size} bytes")
            left -= n
    finally:
        os.close(src)
