"""S3-specific behaviour of the S3 driver, against moto's server mode over HTTP (see tests/s3server.py)."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from storage.base import OffsetMismatchError, PathNotFoundError, StorageError, StorageUnavailableError
from storage.factory import create_driver
from storage.s3 import APPEND_MARKER, S3Driver
from tests.s3server import client, create_bucket, free_port, s3_config, start_moto

MiB = 1 << 20


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def all_keys(endpoint: str, bucket: str) -> list[str]:
    return [o["Key"] for o in client(endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    return client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.fixture
async def s3(moto_endpoint: str, s3_bucket: str) -> AsyncIterator[S3Driver]:
    d = S3Driver.from_config(s3_config(moto_endpoint, s3_bucket))
    yield d
    await d.close()


async def test_small_appends_are_concatenated_on_commit(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    data = os.urandom(3 * MiB + 12345)
    await s3.start_append("up/data")
    step = 700_000  # every PATCH is far below S3's 5 MiB minimum part size: streamed on commit
    for off in range(0, len(data), step):
        assert await s3.append("up/data", chunks_of(data[off : off + step], 64 * 1024), off) == min(
            off + step, len(data)
        )
    assert await s3.append_size("up/data") == len(data)
    assert await s3.list("up") == ["data"]
    assert [k async for k in s3.walk("up")] == ["up/data"]
    assert await s3.seal_append("up/data") == len(data)
    await s3.commit_append("up/data", "blob")
    assert await s3.get("blob") == data
    await s3.abort_append("up/data")
    assert uploads(moto_endpoint, s3_bucket) == []
    assert all_keys(moto_endpoint, s3_bucket) == ["blob"]


async def test_large_appends_are_copied_server_side(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    data = os.urandom(11 * MiB + 3)
    await s3.start_append("l")
    await s3.append("l", chunks_of(data[: 5 * MiB], MiB), 0)
    await s3.append("l", chunks_of(data[5 * MiB :], MiB), 5 * MiB)
    await s3.seal_append("l")
    await s3.commit_append("l", "blob")
    assert await s3.get("blob") == data
    assert client(moto_endpoint).head_object(Bucket=s3_bucket, Key="blob")["ETag"].endswith('-2"')


async def test_single_append_is_copied(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    data = os.urandom(17 * MiB)  # above the part size: the part itself is a multipart object
    await s3.start_append("one")
    await s3.append("one", chunks_of(data, MiB), 0)
    await s3.seal_append("one")
    await s3.commit_append("one", "blob")
    await s3.abort_append("one")
    assert await s3.get("blob") == data
    assert uploads(moto_endpoint, s3_bucket) == []


async def test_another_process_continues_an_append(moto_endpoint: str, s3_bucket: str) -> None:
    data = os.urandom(11 * MiB + 3)
    first = S3Driver.from_config(s3_config(moto_endpoint, s3_bucket, prefix="shared"))
    await first.start_append("u/data")
    assert await first.append("u/data", chunks_of(data[: 6 * MiB + 1], MiB), 0) == 6 * MiB + 1
    await first.close()

    second = S3Driver.from_config(s3_config(moto_endpoint, s3_bucket, prefix="shared"))
    try:
        assert await second.append_size("u/data") == 6 * MiB + 1
        with pytest.raises(OffsetMismatchError):
            await second.append("u/data", chunks_of(b"x", 1), 0)
        assert await second.append("u/data", chunks_of(data[6 * MiB + 1 :], MiB), 6 * MiB + 1) == len(data)
        await second.seal_append("u/data")
        assert await collect(second.read_append("u/data")) == data
        await second.commit_append("u/data", "blob")
        await second.abort_append("u/data")
        assert await collect(second.read_stream("blob", 6 * MiB - 5, 10)) == data[6 * MiB - 5 : 6 * MiB + 5]
    finally:
        await second.close()
    assert all_keys(moto_endpoint, s3_bucket) == ["shared/blob"]


async def test_interrupted_multipart_append_leaves_nothing(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    good = os.urandom(MiB)
    await s3.start_append("i")
    await s3.append("i", chunks_of(good, MiB), 0)

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(17 * MiB)  # fills and uploads a part of its own multipart upload first
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await s3.append("i", broken(), len(good))
    assert await s3.append_size("i") == len(good)
    assert uploads(moto_endpoint, s3_bucket) == []


async def test_multipart_append_losing_its_offset_lands_nothing(
    s3: S3Driver, moto_endpoint: str, s3_bucket: str
) -> None:
    """A large append (its own multipart upload) and a small one at the same offset: the small one
    completes first; the large one's completion is refused (If-None-Match) and its upload aborted."""
    await s3.start_append("race")
    release = asyncio.Event()

    async def large() -> AsyncIterator[bytes]:
        yield os.urandom(17 * MiB)  # one full part uploaded before the wait
        await release.wait()
        yield b"end"

    slow = asyncio.create_task(s3.append("race", large(), 0))
    await asyncio.sleep(1.0)
    assert await s3.append("race", chunks_of(b"small", 5), 0) == 5
    release.set()
    with pytest.raises(OffsetMismatchError):
        await slow
    assert uploads(moto_endpoint, s3_bucket) == []
    await s3.seal_append("race")
    assert await collect(s3.read_append("race")) == b"small"


async def test_part_landing_after_the_session_ended_is_removed(
    s3: S3Driver, moto_endpoint: str, s3_bucket: str
) -> None:
    """An append whose part is created after abort_append removed the state deletes it and fails."""
    await s3.start_append("g")
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"late"
        await release.wait()

    late = asyncio.create_task(s3.append("g", slow(), 0))
    await asyncio.sleep(0.3)
    await s3.abort_append("g")
    release.set()
    with pytest.raises(PathNotFoundError):
        await late
    assert all_keys(moto_endpoint, s3_bucket) == []


async def test_delete_of_a_session_prefix_removes_it(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    await s3.put("_uploads/s1/startedat", b"{}")
    await s3.start_append("_uploads/s1/data")
    await s3.append("_uploads/s1/data", chunks_of(os.urandom(MiB + 1), MiB), 0)
    assert await s3.list("_uploads/s1") == ["data", "startedat"]
    await s3.delete("_uploads")
    assert all_keys(moto_endpoint, s3_bucket) == []


async def test_start_append_twice_discards_the_first(s3: S3Driver) -> None:
    await s3.start_append("r")
    await s3.append("r", chunks_of(os.urandom(MiB + 7), MiB), 0)
    await s3.start_append("r")
    assert await s3.append_size("r") == 0


async def test_put_stream_multipart_and_abort_on_failure(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    data = os.urandom(10 * MiB)  # exactly two parts: no empty last part
    assert await s3.put_stream("big", chunks_of(data, 300_000)) == len(data)
    assert await s3.get("big") == data
    assert client(moto_endpoint).head_object(Bucket=s3_bucket, Key="big")["ETag"].endswith('-2"')

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(6 * MiB)
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await s3.put_stream("big", broken())
    assert await s3.get("big") == data
    assert uploads(moto_endpoint, s3_bucket) == []


async def test_move_by_multipart_copy(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    s3.copy_threshold = s3.copy_part_size = 5 * MiB  # exercise the > 5 GiB path on a small object
    data = os.urandom(11 * MiB)
    await s3.put_stream("src", chunks_of(data, MiB))
    await s3.move("src", "dst/blob")
    assert await s3.get("dst/blob") == data
    assert client(moto_endpoint).head_object(Bucket=s3_bucket, Key="dst/blob")["ETag"].endswith('-3"')
    assert all_keys(moto_endpoint, s3_bucket) == ["dst/blob"]


async def test_read_past_the_end_is_empty(s3: S3Driver) -> None:
    await s3.put("k", b"abc")
    assert await collect(s3.read_stream("k", 3)) == b""
    assert await collect(s3.read_stream("k", 1, 0)) == b""


async def test_redirect_url(moto_endpoint: str, s3_bucket: str, s3: S3Driver) -> None:
    await s3.put("blob", b"direct bytes")
    assert await s3.redirect_url("blob") is None
    redirecting = S3Driver.from_config(s3_config(moto_endpoint, s3_bucket, redirect=True))
    try:
        url = await redirecting.redirect_url("blob")
        assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=1200" in url

        def fetch() -> bytes:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.read()

        assert await asyncio.to_thread(fetch) == b"direct bytes"
    finally:
        await redirecting.close()


async def test_check_and_hidden_probe(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    await s3.check()
    assert all_keys(moto_endpoint, s3_bucket) == []
    assert await s3.list("") == []


async def _assert_unavailable(cfg: dict[str, Any], words: str) -> None:
    d = S3Driver.from_config(cfg)
    try:
        start = time.monotonic()
        with pytest.raises(StorageUnavailableError, match=words):
            await d.check()
        assert time.monotonic() - start < 10
    finally:
        await d.close()


async def test_check_missing_bucket(moto_endpoint: str) -> None:
    await _assert_unavailable(s3_config(moto_endpoint, "no-such-bucket-here"), "does not exist")


async def test_check_unreachable_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await _assert_unavailable(s3_config(endpoint, "b", connect_timeout=2), "cannot reach S3")


@pytest.fixture(scope="module")
def strict_moto() -> Iterator[str]:
    """A moto server that checks credentials (no anonymous grace requests)."""
    endpoint, stop = start_moto(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        yield endpoint
    finally:
        stop()


async def test_check_bad_credentials(strict_moto: str) -> None:
    cfg = s3_config(strict_moto, "some-bucket", access_key_id="AKIAWRONGWRONGWRONG0", secret_access_key="nope")
    await _assert_unavailable(cfg, "refused access")


async def test_runtime_errors_are_unavailable(moto_endpoint: str) -> None:
    d = S3Driver.from_config(s3_config(moto_endpoint, "no-such-bucket-either"))
    try:
        with pytest.raises(StorageUnavailableError):
            await d.put("k", b"v")
        with pytest.raises(StorageUnavailableError):
            await d.list("")
    finally:
        await d.close()


def test_config_validation(moto_endpoint: str) -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3Driver.from_config(s3_config(moto_endpoint, "b", part_size=MiB))
    with pytest.raises(ValueError, match="unknown"):
        S3Driver.from_config(s3_config(moto_endpoint, "b", buckett="x"))
    with pytest.raises(ValueError, match="bucket"):
        S3Driver.from_config({"region": "us-east-1"})


async def test_factory_selects_s3(moto_endpoint: str) -> None:
    d = create_driver({"s3": s3_config(moto_endpoint, create_bucket(moto_endpoint))})
    try:
        assert isinstance(d, S3Driver) and d.name == "s3"
        await d.check()
    finally:
        await d.close()


async def test_reserved_names_are_rejected(s3: S3Driver) -> None:
    with pytest.raises(StorageError):
        await s3.put(f"a/{APPEND_MARKER}b/state.json", b"{}")


async def test_empty_append_changes_nothing(s3: S3Driver, moto_endpoint: str, s3_bucket: str) -> None:
    await s3.start_append("z")
    await s3.append("z", chunks_of(b"abc", 1), 0)
    before = all_keys(moto_endpoint, s3_bucket)
    assert await s3.append("z", chunks_of(b"", 1), 3) == 3
    assert all_keys(moto_endpoint, s3_bucket) == before


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, PathNotFoundError),
        ("404", 404, PathNotFoundError),
        # Real S3 answers 404 NoSuchUpload when an upload was aborted behind our back (a lifecycle
        # rule); moto answers 500, so the mapping is checked here rather than end to end.
        ("NoSuchUpload", 404, PathNotFoundError),
        ("NoSuchBucket", 404, StorageUnavailableError),
        ("SignatureDoesNotMatch", 403, StorageUnavailableError),
        ("SlowDown", 503, StorageUnavailableError),
        ("InvalidArgument", 400, StorageError),
    ],
)
def test_error_mapping(s3_bucket: str, moto_endpoint: str, code: str, status: int, expected: type) -> None:
    from botocore.exceptions import ClientError

    d = S3Driver.from_config(s3_config(moto_endpoint, s3_bucket))
    err = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    assert type(d._translate(err, "k")) is expected
    asyncio.run(d.close())
