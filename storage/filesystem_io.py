"""Durable file primitives the filesystem driver's modules share: temp files beside their destination,
whole writes, fsyncs, create-only placement by hard link, and blocking calls run in the thread pool
with the OSErrors that mean "full" or "unusable" translated to storage errors."""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from storage.base import StorageFullError, StorageUnavailableError

T = TypeVar("T")
TEMP_PREFIX = ".tmp-"


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in the default thread pool; ENOSPC, EACCES, EROFS and EIO become storage errors."""
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    except OSError as e:
        translated = translate(e)
        if translated is e:
            raise
        raise translated from e


def translate(e: OSError) -> Exception:
    """StorageFullError or StorageUnavailableError for the errors that mean so, else `e` itself."""
    if e.errno == errno.ENOSPC:
        return StorageFullError("no space left on the storage device")
    if e.errno in (errno.EACCES, errno.EROFS, errno.EIO):
        return StorageUnavailableError(f"storage error: {e.strerror}")
    return e


def temp_beside(path: str) -> str:
    """A fresh temp file name in the directory of `path` (same filesystem, so it can be renamed or linked)."""
    return os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{uuid.uuid4().hex}")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def flush_and_sync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_only(path: str, tmp: str, write: Callable[[int], None]) -> bool:
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
        unlink_quietly(tmp)
    return True


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
