"""The S3 plumbing the S3 driver's modules share: calls on one bucket through boto3, run in the driver's
bounded thread pool, with errors translated to storage errors; the key layout under the prefix;
conditional (create-only) writes; streamed writes (one PUT, or a multipart upload of parts of
`part_size`) and server-side copies."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3.exceptions
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from storage.base import PathNotFoundError, StorageDriver, StorageError, StorageUnavailableError

T = TypeVar("T")

MiB = 1 << 20
GiB = 1 << 30
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
COPY_THRESHOLD = 5 * GiB  # CopyObject limit; larger objects are copied part by part
DELETE_BATCH = 1000
RESERVED = ".trustreg-"  # no key component may start with this

NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}  # NoSuchUpload: append object gone
ACCESS_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "403",
}
UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


class S3Bucket(StorageDriver):
    """The bucket plumbing of S3Driver, whose constructor sets the attributes below."""

    bucket: str
    prefix: str  # "" or ends with "/"
    endpoint_url: str | None
    part_size: int
    copy_threshold: int  # larger objects are copied part by part
    copy_part_size: int
    _client: Any
    _pool: ThreadPoolExecutor

    # --- keys ----------------------------------------------------------------------------------
    @staticmethod
    def _parts(key: str) -> list[str]:
        parts = [p for p in key.split("/") if p]
        for p in parts:
            if p in (".", "..") or p.startswith(RESERVED):
                raise StorageError(f"invalid key: {key!r}")
        return parts

    def _full(self, key: str) -> str:
        """The S3 key of an object (raises StorageError for the root)."""
        parts = self._parts(key)
        if not parts:
            raise StorageError("the storage root is not an object")
        return self.prefix + "/".join(parts)

    def _dir(self, key: str) -> str:
        """The S3 prefix of everything under `key` (ends with '/' unless it is the bare root)."""
        parts = self._parts(key)
        return self.prefix + "".join(p + "/" for p in parts)

    # --- calls ---------------------------------------------------------------------------------
    def _translate(self, e: BaseException, key: str) -> Exception:
        """The storage error for a failed call on `key` (`e` itself if it is none of S3's)."""
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = err.get("Message") or code
            if code in NOT_FOUND_CODES:
                return PathNotFoundError(key)
            if code == "NoSuchBucket":
                return StorageUnavailableError(f"S3 bucket {self.bucket!r} does not exist")
            if code in ACCESS_CODES or status == 403:
                return StorageUnavailableError(
                    f"S3 refused access to bucket {self.bucket!r} ({code}: {message}); "
                    "check the credentials and the bucket policy"
                )
            if code in UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
                return StorageUnavailableError(f"S3 is unavailable ({code}: {message})")
            return StorageError(f"S3 error on {key!r} ({code}: {message})")
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StorageUnavailableError(f"no usable S3 credentials: {e}")
        if isinstance(e, ParamValidationError):
            return StorageError(f"invalid S3 request for {key!r}: {e}")
        if isinstance(e, (BotoCoreError, urllib3.exceptions.HTTPError, OSError)):
            where = self.endpoint_url or "AWS S3"
            return StorageUnavailableError(f"cannot reach S3 at {where}: {e}")
        return e  # type: ignore[return-value]

    async def _run(self, fn: Callable[..., T], *args: Any, key: str = "", **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError) as e:
            raise self._translate(e, key) from e

    async def _call(self, op: str, key: str = "", **kwargs: Any) -> Any:
        """Run one S3 API call on this bucket in the pool, translating errors."""
        return await self._run(getattr(self._client, op), Bucket=self.bucket, key=key, **kwargs)

    async def _conditional(self, op: str, key: str, **kwargs: Any) -> Any:
        """An S3 call that may carry `IfNoneMatch`: 412 PreconditionFailed raises ObjectExistsError; a 409
        ConditionalRequestConflict (a concurrent conditional write in flight) is retried."""
        for attempt in range(3):
            try:
                return await self._call(op, key, **kwargs)
            except StorageError as e:
                code = error_code(e)
                if code == "PreconditionFailed":
                    raise ObjectExistsError(key) from e
                if code != "ConditionalRequestConflict" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _abort_quietly(self, full: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", full, Key=full, UploadId=upload_id)
        except (StorageError, asyncio.CancelledError):
            pass  # a lifecycle rule or a later abort_append/delete cleans up

    # --- listing and deleting ------------------------------------------------------------------
    def _list_page(self, prefix: str, token: str | None, delimiter: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        if delimiter:
            kwargs["Delimiter"] = "/"
        return self._client.list_objects_v2(**kwargs)

    async def _iter_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """Pages of every S3 key under the S3 prefix `prefix`."""
        token: str | None = None
        while True:
            page = await self._run(self._list_page, prefix, token, False, key=prefix)
            keys = [o["Key"] for o in page.get("Contents", [])]
            if keys:
                yield keys
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def _delete_batch(self, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            resp = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(f"S3 could not delete {first.get('Key')!r}: {first.get('Code')}")

    async def _delete_prefix(self, prefix: str, key: str) -> None:
        async for page in self._iter_keys(prefix):
            await self._run(self._delete_batch, page, key=key)

    async def _get_raw(self, s3_key: str, key: str) -> bytes:
        def read() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=s3_key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return await self._run(read, key=key)

    # --- streamed writes and copies ------------------------------------------------------------
    async def _write_stream(self, full: str, key: str, chunks: AsyncIterable[bytes], create_only: bool = False) -> int:
        """Write a stream to the S3 key `full` (one PUT, or a multipart upload for more than a part);
        with `create_only`, raise ObjectExistsError (and write nothing) if an object is already there."""
        condition = {"IfNoneMatch": "*"} if create_only else {}
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        written = 0
        try:
            async for part in _parts_of(chunks, self.part_size, b""):
                written = part.total
                if part.final and upload_id is None:
                    await self._conditional("put_object", key, Key=full, Body=part.data, **condition)
                    return written
                if part.final and not part.data:
                    break
                if upload_id is None:
                    resp = await self._call("create_multipart_upload", key, Key=full)
                    upload_id = resp["UploadId"]
                if len(parts) >= MAX_PARTS:
                    raise StorageError(f"{key!r} needs more than {MAX_PARTS} parts of {self.part_size} bytes")
                n = len(parts) + 1
                resp = await self._call("upload_part", key, Key=full, UploadId=upload_id, PartNumber=n, Body=part.data)
                parts.append({"PartNumber": n, "ETag": resp["ETag"]})
            assert upload_id is not None
            await self._conditional(
                "complete_multipart_upload",
                key,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
            return written
        except BaseException:
            if upload_id is not None:
                await self._abort_quietly(full, upload_id)
            raise

    async def _copy(self, src: str, dst: str, size: int, key: str) -> None:
        """Server-side copy of the S3 key `src` (of `size` bytes) to `dst`."""
        source = {"Bucket": self.bucket, "Key": src}
        if size <= self.copy_threshold:
            await self._call("copy_object", key, Key=dst, CopySource=source)
            return
        step = max(self.copy_part_size, math.ceil(size / MAX_PARTS))
        ranges = [f"bytes={start}-{min(start + step, size) - 1}" for start in range(0, size, step)]
        await self._copy_pieces(dst, [{"CopySource": source, "CopySourceRange": r} for r in ranges], key)

    async def _copy_pieces(self, dst: str, pieces: list[dict[str, Any]], key: str) -> None:
        """Concatenate `pieces` (each an UploadPartCopy's CopySource and optional CopySourceRange)
        server-side into `dst`, as one multipart upload."""
        upload_id = (await self._call("create_multipart_upload", key, Key=dst))["UploadId"]
        try:
            parts = []
            for n, piece in enumerate(pieces, start=1):
                r = await self._call("upload_part_copy", key, Key=dst, UploadId=upload_id, PartNumber=n, **piece)
                parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
            await self._call(
                "complete_multipart_upload", key, Key=dst, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await self._abort_quietly(dst, upload_id)
            raise


class ObjectExistsError(StorageError):
    """A create-only write found an object in place."""


def error_code(e: BaseException) -> str | None:
    """The S3 error code behind a translated error, if S3 gave one."""
    cause = e.__cause__
    return cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None


@dataclass
class _Part:
    data: bytearray
    total: int  # bytes consumed from the stream so far
    final: bool  # the stream ended; `data` is the remainder (< part size, may be empty)


async def _parts_of(chunks: AsyncIterable[bytes], part_size: int, initial: bytes) -> AsyncIterator[_Part]:
    """Regroup a stream into full parts of `part_size`, starting with `initial` (a stored tail), then
    one final (short, possibly empty) remainder. One part-sized buffer is reused for every part, so
    each part must be consumed before the generator is resumed."""
    total = 0
    if len(initial) >= part_size:  # a tail left by a writer configured with a larger part size
        yield _Part(bytearray(initial), total, False)
        initial = b""
    buf = bytearray(part_size)
    filled = len(initial)
    buf[:filled] = initial
    del initial
    async for chunk in chunks:
        total += len(chunk)
        view = memoryview(chunk)
        while view:
            take = min(len(view), part_size - filled)
            buf[filled : filled + take] = view[:take]
            filled += take
            view = view[take:]
            if filled == part_size:
                yield _Part(buf, total, False)
                filled = 0
    del buf[filled:]  # shrinks in place; the buffer is not reused after the final part
    yield _Part(buf, total, True)
