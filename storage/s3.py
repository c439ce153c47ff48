"""S3 storage driver: objects in a bucket (optionally under a key prefix), through boto3.

boto3 blocks, so every call runs in a bounded thread pool owned by the driver, on one shared client
(connection pool sized to the thread pool, connect/read timeouts, standard retries with backoff for
throttling, 5xx and transient network errors). This module builds the driver from its configuration
and holds the object and namespace operations; the bucket plumbing (calls, errors, streamed writes,
copies) is in `storage.s3_bucket`, append objects (upload sessions) in `storage.s3_append`. `list` and
`walk` show an append object under its own name, as the filesystem driver does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from storage.base import READ_CHUNK, PathNotFoundError, Stat, StorageError, StorageUnavailableError
from storage.s3_append import APPEND_MARKER, STATE_NAME, S3AppendObjects
from storage.s3_bucket import (
    COPY_THRESHOLD,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    RESERVED,
    MiB,
    ObjectExistsError,
    error_code,
)

DEFAULT_PART_SIZE = 16 * MiB
COPY_PART_SIZE = 512 * MiB
REDIRECT_EXPIRY = 20 * 60


class S3Driver(S3AppendObjects):
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
        except ObjectExistsError:
            return False
        return True

    # --- streams -------------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        return await self._write_stream(self._full(key), key, chunks)

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
            if error_code(e) == "InvalidRange":
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

    async def delete(self, key: str) -> None:
        parts = self._parts(key)
        prefixes = [self._dir(key)]
        if parts:
            prefixes.append(self._sidecar(key))
            await self._run(self._delete_batch, [self._full(key)], key=key)
        for prefix in prefixes:
            await self._delete_prefix(prefix, key)

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
