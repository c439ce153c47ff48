"""Append objects (upload sessions) of the S3 driver, with their state in the bucket so any process
sharing it can continue them. For key `dir/name` the hidden sidecar `dir/.trustreg-append-name/` holds:

- `state.json`: the session exists (created by `start_append`, removed first when it ends);
- `part-<offset, 20 digits>`: the bytes one `append` received, written whole (one PUT, or a multipart
  upload of its own) and created with `If-None-Match: *`, so of two appends at one offset at most one
  lands and no writer can touch a part once it exists;
- the seal: an empty part created (create-only too) at the end by `seal_append`; an append that
  commits after it finds its offset taken, and the current size never passes it.

`commit_append` copies the parts server-side (one part: CopyObject; parts that all but the last reach
S3's 5 MiB minimum: UploadPartCopy) or, for many small parts, streams them into a new object with at
most one part buffered. A part that lands after its session ended (the state is gone) is deleted by
its writer, who gets an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from storage.base import READ_CHUNK, AppendChain, PathNotFoundError, StorageError
from storage.s3_bucket import MAX_PARTS, MIN_PART_SIZE, RESERVED, ObjectExistsError, S3Bucket

APPEND_MARKER = RESERVED + "append-"
STATE_NAME = "state.json"
PART_PREFIX = "part-"


class S3AppendObjects(S3Bucket):
    """The append-object half of S3Driver; see the module docstring."""

    def _sidecar(self, key: str) -> str:
        """The S3 prefix holding the append state of `key`."""
        parts = self._parts(key)
        if not parts:
            raise StorageError("the storage root is not an object")
        return self.prefix + "".join(p + "/" for p in parts[:-1]) + APPEND_MARKER + parts[-1] + "/"

    def _logical(self, s3_key: str) -> str | None:
        """The driver key of an S3 key: append sidecars map to their object, other internals to None."""
        rel = s3_key[len(self.prefix) :]
        parts = rel.split("/")
        for i, p in enumerate(parts):
            if p.startswith(APPEND_MARKER):
                if i == len(parts) - 2 and parts[-1] == STATE_NAME:
                    return "/".join([*parts[:i], p[len(APPEND_MARKER) :]])
                return None
            if p.startswith(RESERVED) or not p:
                return None
        return rel

    async def _chain(self, key: str) -> AppendChain[str]:
        """The committed parts (S3 key, size) of the append object `key`."""
        side = self._sidecar(key)

        def collect() -> dict[str, int]:
            found: dict[str, int] = {}
            token: str | None = None
            while True:
                page = self._list_page(side, token, False)
                found.update({o["Key"][len(side) :]: int(o["Size"]) for o in page.get("Contents", [])})
                if not page.get("IsTruncated"):
                    return found
                token = page["NextContinuationToken"]

        found = await self._run(collect, key=key)
        if STATE_NAME not in found:
            raise PathNotFoundError(key)

        def part_at(offset: int) -> tuple[str, int] | None:
            name = _part_name(offset)
            return (side + name, found[name]) if name in found else None

        return AppendChain.follow(part_at)

    async def start_append(self, key: str) -> None:
        await self.abort_append(key)
        await self._call("put_object", key, Key=self._sidecar(key) + STATE_NAME, Body=b"{}")

    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        (await self._chain(key)).check_append(key, offset)
        side = self._sidecar(key)
        part = side + _part_name(offset)
        try:
            written = await self._write_stream(part, key, _non_empty(chunks), create_only=True)
        except ObjectExistsError:
            raise (await self._chain(key)).taken(key, offset) from None
        except _Empty:
            return offset
        try:  # the session may have ended while the part was written: then the part is not ours to keep
            await self._call("head_object", key, Key=side + STATE_NAME)
        except PathNotFoundError:
            await self._run(self._delete_batch, [part], key=key)
            raise
        return offset + written

    async def append_size(self, key: str) -> int:
        return (await self._chain(key)).size

    async def seal_append(self, key: str) -> int:
        while True:
            chain = await self._chain(key)
            if chain.sealed:
                return chain.size
            try:
                await self._conditional(
                    "put_object", key, Key=self._sidecar(key) + _part_name(chain.size), Body=b"", IfNoneMatch="*"
                )
                return chain.size
            except ObjectExistsError:
                continue  # an append landed first: seal after it

    async def _sealed_parts(self, key: str) -> list[tuple[str, int]]:
        return (await self._chain(key)).sealed_parts(key)

    async def read_append(self, key: str) -> AsyncIterator[bytes]:
        for part, _ in await self._sealed_parts(key):
            resp = await self._call("get_object", key, Key=part)
            body = resp["Body"]
            try:
                while chunk := await self._run(body.read, READ_CHUNK, key=key):
                    yield chunk
            finally:
                body.close()

    async def commit_append(self, key: str, dst: str) -> None:
        parts = await self._sealed_parts(key)
        full = self._full(dst)
        try:
            await self.stat(dst)
            return
        except PathNotFoundError:
            pass
        if not parts:
            await self._call("put_object", dst, Key=full, Body=b"")
        elif len(parts) == 1:
            await self._copy(parts[0][0], full, parts[0][1], key)
        elif (
            len(parts) <= MAX_PARTS
            and all(MIN_PART_SIZE <= n <= self.copy_threshold for _, n in parts[:-1])
            and parts[-1][1] <= self.copy_threshold
        ):
            pieces = [{"CopySource": {"Bucket": self.bucket, "Key": part}} for part, _ in parts]
            await self._copy_pieces(full, pieces, key)  # one UploadPartCopy per part
        else:
            await self._write_stream(full, dst, self.read_append(key))

    async def abort_append(self, key: str) -> None:
        """The state goes first: a part committed after that is deleted by its own writer."""
        side = self._sidecar(key)
        await self._run(self._delete_batch, [side + STATE_NAME], key=key)
        await self._delete_prefix(side, key)


class _Empty(Exception):
    """The stream had no bytes."""


def _part_name(offset: int) -> str:
    return f"{PART_PREFIX}{offset:020d}"


async def _non_empty(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The stream, or _Empty before anything is written if it has no bytes."""
    empty = True
    async for chunk in chunks:
        if chunk:
            empty = False
            yield chunk
    if empty:
        raise _Empty
