"""S3 storage driver: objects in a bucket (optionally under a key prefix), through boto3.

boto3 blocks, so every call runs in a bounded thread pool owned by the driver, on one shared client
(connection pool sized to the thread pool, connect/read timeouts, standard retries with backoff for
throttling, 5xx and transient network errors).

Append objects (upload sessions) keep their state in the bucket so any process sharing it can continue
them. For key `dir/name` the hidden sidecar `dir/.trustreg-append-name/` holds:

- `state.json`: the session exists (created by `start_append`, removed first when it ends);
- `part-<offset, 20 digits>`: the bytes one `append` received, written whole (one PUT, or a multipart
  upload of its own) and created with `If-None-Match: *`, so of two appends at one offset at most one
  lands and no writer can touch a part once it exists;
- the seal: an empty part created (create-only too) at the end by `seal_append`; an append that
  commits after it finds its offset taken, and the current size never passes it.

`commit_append` copies the parts server-side (one part: CopyObject; parts that all but the last reach
S3's 5 MiB minimum: UploadPartCopy) or, for many small parts, streams them into a new object with at
most one part buffered. A part that lands after its session ended (the state is gone) is deleted by
its writer, who gets an error. `list` and `walk` show an append object under its own name, as the
filesystem driver does.
"""

from __future__ import annotations

import asyncio
import functools
import math
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from storage.base import (
    READ_CHUNK,
    AppendChain,
    PathNotFoundError,
    Stat,
    StorageDriver,
    StorageError,
    StorageUnavailableError,
)

T = TypeVar("T")

MiB = 1 << 20
GiB = 1 << 30
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
DEFAULT_PART_SIZE = 16 * MiB
MAX_PARTS = 10_000
COPY_THRESHOLD = 5 * GiB  # CopyObject limit; larger objects are copied part by part
COPY_PART_SIZE = 512 * MiB
DELETE_BATCH = 1000
REDIRECT_EXPIRY = 20 * 60

RESERVED = ".trustreg-"  # no key component may start with this
APPEND_MARKER = RESERVED + "append-"
STATE_NAME = "state.json"
PART_PREFIX = "part-"

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


class S3Driver(StorageDriver):
    """Objects in an S3 bucket; see the module docstring."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        redirect: bool = False,
        redirect_expiry: int = REDIRECT_EXPIRY,
        redirect_endpoint: str | None = None,
        max_workers: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 4,
        addressing_style: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("storage.s3.bucket is required")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"storage.s3.part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        if max_workers < 1:
            raise ValueError("storage.s3.max_workers must be at least 1")
        self.bucket = bucket
        self.prefix = "/".join(p for p in prefix.split("/") if p)
        if self.prefix:
            self.prefix += "/"
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self.redirect = redirect
        self.redirect_expiry = redirect_expiry
        self.copy_threshold = COPY_THRESHOLD
        self.copy_part_size = COPY_PART_SIZE
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="s3")
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region or None,
        )
        style = addressing_style or ("path" if endpoint_url else "auto")
        extra: dict[str, Any] = {}
        if endpoint_url:
            # S3-compatible services often reject the newer default checksum headers.
            extra = {"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}

        def make_client(attempts: int, endpoint: str | None = endpoint_url, path_style: bool = False) -> Any:
            cfg = Config(
                max_pool_connections=max_workers,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "max_attempts": attempts},
                s3={"addressing_style": "path" if path_style and not addressing_style else style},
                signature_version="s3v4",
                **extra,
            )
            return session.client("s3", endpoint_url=endpoint or None, config=cfg)

        self._client = make_client(max_attempts)
        # Redirect URLs are signed for the host clients will fetch them from (SigV4 signs the Host).
        self._presign_client = (
            make_client(max_attempts, redirect_endpoint, path_style=True) if redirect_endpoint else self._client
        )
        # Start-up and readiness checks should fail in seconds, not after a full retry budget.
        self._probe_client = make_client(min(2, max_attempts))

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> S3Driver:
        """Build from the `storage.s3` config section."""
        known = {
            "bucket", "prefix", "region", "endpoint_url", "access_key_id", "secret_access_key",
            "session_token", "part_size", "redirect", "redirect_expiry", "redirect_endpoint", "max_workers",
            "connect_timeout", "read_timeout", "max_attempts", "addressing_style",
        }  # fmt: skip
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown storage.s3 keys: {', '.join(sorted(unknown))}")
        if not cfg.get("bucket"):
            raise ValueError("storage.s3.bucket is required")
        kwargs = {k: v for k, v in cfg.items() if v is not None and k != "bucket"}
        return cls(cfg["bucket"], **kwargs)

    # --- helpers -------------------------------------------------------------------------------
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

    def _translate(self, e: BaseException, key: str) -> Exception:
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

    # --- small objects -------------------------------------------------------------------------
    async def stat(self, key: str) -> Stat:
        head = await self._call("head_object", key, Key=self._full(key))
        return Stat(size=int(head["ContentLength"]), modified=head["LastModified"].timestamp())

    async def get(self, key: str) -> bytes:
        return await self._get_raw(self._full(key), key)

    async def put(self, key: str, data: bytes) -> None:
        await self._call("put_object", key, Key=self._full(key), Body=data)

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """S3 conditional write (`If-None-Match: *`): 412 PreconditionFailed if the key exists."""
        try:
            await self._conditional("put_object", key, Key=self._full(key), Body=data, IfNoneMatch="*")
        except _Exists:
            return False
        return True

    # --- streams -------------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        return await self._write_stream(self._full(key), key, chunks)

    async def _write_stream(self, full: str, key: str, chunks: AsyncIterable[bytes], create_only: bool = False) -> int:
        """Write a stream to the S3 key `full` (one PUT, or a multipart upload for more than a part);
        with `create_only`, raise _Exists (and write nothing) if an object is already there."""
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

    async def _conditional(self, op: str, key: str, **kwargs: Any) -> Any:
        """An S3 call that may carry `IfNoneMatch`: 412 PreconditionFailed raises _Exists; a 409
        ConditionalRequestConflict (a concurrent conditional write in flight) is retried."""
        for attempt in range(3):
            try:
                return await self._call(op, key, **kwargs)
            except StorageError as e:
                code = _error_code(e)
                if code == "PreconditionFailed":
                    raise _Exists(key) from e
                if code != "ConditionalRequestConflict" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _abort_quietly(self, full: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", full, Key=full, UploadId=upload_id)
        except (StorageError, asyncio.CancelledError):
            pass  # a lifecycle rule or a later abort_append/delete cleans up

    async def read_stream(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        full = self._full(key)
        if length is not None and length <= 0:
            await self.stat(key)
            return
        kwargs: dict[str, Any] = {"Key": full}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"
        try:
            resp = await self._call("get_object", key, **kwargs)
        except StorageError as e:
            cause = e.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "InvalidRange":
                return  # the object exists; the range starts at or past its end
            raise
        body = resp["Body"]
        try:
            while True:
                chunk = await self._run(body.read, READ_CHUNK, key=key)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def redirect_url(self, key: str) -> str | None:
        if not self.redirect:
            return None
        return await self._run(
            self._presign_client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=self.redirect_expiry,
            key=key,
        )

    # --- namespace -----------------------------------------------------------------------------
    async def list(self, prefix: str) -> list[str]:
        base = self._dir(prefix)

        def collect() -> list[str]:
            names: set[str] = set()
            token: str | None = None
            while True:
                page = self._list_page(base, token, True)
                found = [cp["Prefix"][len(base) :].rstrip("/") for cp in page.get("CommonPrefixes", [])]
                found += [o["Key"][len(base) :] for o in page.get("Contents", [])]
                for name in found:
                    if name.startswith(APPEND_MARKER):
                        names.add(name[len(APPEND_MARKER) :])
                    elif name and not name.startswith(RESERVED):
                        names.add(name)
                if not page.get("IsTruncated"):
                    return sorted(names)
                token = page["NextContinuationToken"]

        return await self._run(collect, key=prefix)

    async def walk(self, prefix: str) -> AsyncIterator[str]:
        appends: set[str] = set()
        async for page in self._iter_keys(self._dir(prefix)):
            for s3_key in page:
                logical = self._logical(s3_key)
                if logical is None or logical in appends:
                    continue
                if s3_key.endswith("/" + STATE_NAME) and APPEND_MARKER in s3_key:
                    appends.add(logical)
                yield logical

    async def move(self, src: str, dst: str) -> None:
        s = self._full(src)
        await self._copy(s, self._full(dst), (await self.stat(src)).size, src)
        await self._call("delete_object", src, Key=s)

    async def _copy(self, src: str, dst: str, size: int, key: str) -> None:
        """Server-side copy of the S3 key `src` (of `size` bytes) to `dst`."""
        source = {"Bucket": self.bucket, "Key": src}
        if size <= self.copy_threshold:
            await self._call("copy_object", key, Key=dst, CopySource=source)
        else:
            await self._multipart_copy(key, source, dst, size)

    async def _multipart_copy(self, src: str, source: dict[str, str], dst: str, size: int) -> None:
        part = max(self.copy_part_size, math.ceil(size / MAX_PARTS))
        resp = await self._call("create_multipart_upload", src, Key=dst)
        upload_id = resp["UploadId"]
        try:
            parts = []
            for n, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                r = await self._call(
                    "upload_part_copy",
                    src,
                    Key=dst,
                    UploadId=upload_id,
                    PartNumber=n,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
            await self._call(
                "complete_multipart_upload", src, Key=dst, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await self._abort_quietly(dst, upload_id)
            raise

    async def delete(self, key: str) -> None:
        parts = self._parts(key)
        prefixes = [self._dir(key)]
        if parts:
            prefixes.append(self._sidecar(key))
            await self._run(self._delete_batch, [self._full(key)], key=key)
        for prefix in prefixes:
            await self._delete_prefix(prefix, key)

    # --- append objects ------------------------------------------------------------------------
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

    async def _get_raw(self, s3_key: str, key: str) -> bytes:
        def read() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=s3_key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return await self._run(read, key=key)

    async def start_append(self, key: str) -> None:
        await self.abort_append(key)
        await self._call("put_object", key, Key=self._sidecar(key) + STATE_NAME, Body=b"{}")

    async def append(self, key: str, chunks: AsyncIterable[bytes], offset: int) -> int:
        (await self._chain(key)).check_append(key, offset)
        side = self._sidecar(key)
        part = side + _part_name(offset)
        try:
            written = await self._write_stream(part, key, _non_empty(chunks), create_only=True)
        except _Exists:
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
            except _Exists:
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
        elif len(parts) <= MAX_PARTS and all(
            MIN_PART_SIZE <= n <= self.copy_threshold for _, n in parts[:-1]
        ) and parts[-1][1] <= self.copy_threshold:
            await self._copy_parts(parts, full, key)
        else:
            await self._write_stream(full, dst, self.read_append(key))

    async def _copy_parts(self, parts: list[tuple[str, int]], full: str, key: str) -> None:
        """Concatenate parts server-side: one UploadPartCopy per part."""
        upload_id = (await self._call("create_multipart_upload", key, Key=full))["UploadId"]
        try:
            copied = []
            for n, (part, _) in enumerate(parts, start=1):
                r = await self._call(
                    "upload_part_copy",
                    key,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=n,
                    CopySource={"Bucket": self.bucket, "Key": part},
                )
                copied.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
            await self._call(
                "complete_multipart_upload", key, Key=full, UploadId=upload_id, MultipartUpload={"Parts": copied}
            )
        except BaseException:
            await self._abort_quietly(full, upload_id)
            raise

    async def _delete_prefix(self, prefix: str, key: str) -> None:
        async for page in self._iter_keys(prefix):
            await self._run(self._delete_batch, page, key=key)

    async def abort_append(self, key: str) -> None:
        """The state goes first: a part committed after that is deleted by its own writer."""
        side = self._sidecar(key)
        await self._run(self._delete_batch, [side + STATE_NAME], key=key)
        await self._delete_prefix(side, key)

    # --- lifecycle -----------------------------------------------------------------------------
    async def check(self) -> None:
        probe = self._probe_client
        try:
            await self._run(probe.head_bucket, Bucket=self.bucket)
        except PathNotFoundError as e:
            raise StorageUnavailableError(f"S3 bucket {self.bucket!r} does not exist") from e
        probe_key = f"{self.prefix}{RESERVED}check-{uuid.uuid4().hex}"
        await self._run(probe.put_object, Bucket=self.bucket, Key=probe_key, Body=b"")
        await self._run(probe.delete_object, Bucket=self.bucket, Key=probe_key)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in {id(c): c for c in (self._client, self._probe_client, self._presign_client)}.values():
            client.close()


class _Exists(StorageError):
    """A create-only write found an object in place."""


class _Empty(Exception):
    """The stream had no bytes."""


def _error_code(e: BaseException) -> str | None:
    cause = e.__cause__
    return cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None


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
