"""The storage driver contract: one suite, run against every driver (see conftest.DRIVERS)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from storage.base import AppendSealedError, OffsetMismatchError, PathNotFoundError, StorageDriver, TooManyPartsError


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


async def test_put_get_stat(driver: StorageDriver) -> None:
    await driver.put("a/b/c", b"hello")
    assert await driver.get("a/b/c") == b"hello"
    st = await driver.stat("a/b/c")
    assert st.size == 5 and st.modified > 0


async def test_put_replaces(driver: StorageDriver) -> None:
    await driver.put("k", b"one")
    await driver.put("k", b"two!")
    assert await driver.get("k") == b"two!"
    assert (await driver.stat("k")).size == 4


async def test_put_many_writes_every_batch(driver: StorageDriver) -> None:
    await driver.put("m/tag", b"old")
    await driver.put_many([[("m/content", b"body"), ("m/sub/link", b"L")], [("m/tag", b"new")]])
    assert [await driver.get(k) for k in ("m/content", "m/sub/link", "m/tag")] == [b"body", b"L", b"new"]
    assert await driver.list("m") == ["content", "sub", "tag"]


async def test_put_if_absent_creates_once(driver: StorageDriver) -> None:
    assert await driver.put_if_absent("once/key", b"first")
    assert not await driver.put_if_absent("once/key", b"second")
    assert await driver.get("once/key") == b"first"
    assert await driver.list("once") == ["key"]  # no temp files left beside it


async def test_put_if_absent_has_one_winner_among_racers(driver: StorageDriver) -> None:
    import asyncio

    won = await asyncio.gather(*(driver.put_if_absent("race/key", f"racer {i}".encode()) for i in range(8)))
    assert won.count(True) == 1
    assert await driver.get("race/key") == f"racer {won.index(True)}".encode()


async def test_missing_raises(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFoundError):
        await driver.get("nope")
    with pytest.raises(PathNotFoundError):
        await driver.stat("nope/deeper")
    with pytest.raises(PathNotFoundError):
        await collect(driver.read_stream("nope"))


async def test_stat_of_prefix_is_not_found(driver: StorageDriver) -> None:
    await driver.put("dir/file", b"x")
    with pytest.raises(PathNotFoundError):
        await driver.stat("dir")


async def test_put_stream_and_ranges(driver: StorageDriver) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    n = await driver.put_stream("blob", chunks_of(data[:1000], data[1000:2_000_000], data[2_000_000:]))
    assert n == len(data)
    assert await collect(driver.read_stream("blob")) == data
    assert await collect(driver.read_stream("blob", 5, 10)) == data[5:15]
    assert await collect(driver.read_stream("blob", 2_500_000)) == data[2_500_000:]
    assert await collect(driver.read_stream("blob", len(data) - 1, 100)) == data[-1:]


async def test_put_stream_failure_leaves_old_object(driver: StorageDriver) -> None:
    await driver.put("obj", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"new partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await driver.put_stream("obj", broken())
    assert await driver.get("obj") == b"old"
    assert await driver.list("") == ["obj"]


async def test_list_children_sorted(driver: StorageDriver) -> None:
    for key in ["p/b", "p/a/x", "p/a/y", "p/c/d/e", "q"]:
        await driver.put(key, b"1")
    assert await driver.list("p") == ["a", "b", "c"]
    assert await driver.list("p/a") == ["x", "y"]
    assert await driver.list("missing") == []


async def test_walk(driver: StorageDriver) -> None:
    for key in ["w/1", "w/x/2", "w/x/y/3", "other"]:
        await driver.put(key, b"1")
    assert sorted([k async for k in driver.walk("w")]) == ["w/1", "w/x/2", "w/x/y/3"]


async def test_move(driver: StorageDriver) -> None:
    await driver.put("src", b"data")
    await driver.put("dst/x", b"old")
    await driver.move("src", "dst/x")
    assert await driver.get("dst/x") == b"data"
    with pytest.raises(PathNotFoundError):
        await driver.get("src")
    with pytest.raises(PathNotFoundError):
        await driver.move("src", "elsewhere")


async def test_delete_object_and_prefix(driver: StorageDriver) -> None:
    for key in ["d/1", "d/2/3", "keep"]:
        await driver.put(key, b"1")
    await driver.delete("d/1")
    assert await driver.list("d") == ["2"]
    await driver.delete("d")
    assert await driver.list("d") == []
    assert await driver.get("keep") == b"1"
    await driver.delete("never-existed")


async def test_append_lifecycle(driver: StorageDriver) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    await driver.start_append("up/data")
    assert await driver.append_size("up/data") == 0
    n = await driver.append("up/data", chunks_of(data[:100]), 0)
    assert n == 100
    n = await driver.append("up/data", chunks_of(data[100:1_000_000], data[1_000_000:]), 100)
    assert n == len(data)
    assert await driver.append_size("up/data") == len(data)
    assert await driver.seal_append("up/data") == len(data)
    assert await driver.seal_append("up/data") == len(data)  # sealing twice is harmless
    assert await collect(driver.read_append("up/data")) == data
    await driver.commit_append("up/data", "final")
    await driver.abort_append("up/data")
    assert await driver.get("final") == data
    with pytest.raises(PathNotFoundError):
        await driver.append_size("up/data")


async def test_sealed_append_takes_no_more_bytes(driver: StorageDriver) -> None:
    await driver.start_append("s")
    await driver.append("s", chunks_of(b"abc"), 0)
    assert await driver.seal_append("s") == 3
    with pytest.raises(AppendSealedError):
        await driver.append("s", chunks_of(b"def"), 3)
    with pytest.raises(AppendSealedError):
        await driver.append("s", chunks_of(b"def"), 0)
    assert await driver.append_size("s") == 3
    await driver.commit_append("s", "blob")
    assert await driver.get("blob") == b"abc"


async def test_commit_append_keeps_an_existing_object(driver: StorageDriver) -> None:
    await driver.put("blob", b"first")
    await driver.start_append("k")
    await driver.append("k", chunks_of(b"other"), 0)
    await driver.seal_append("k")
    await driver.commit_append("k", "blob")
    assert await driver.get("blob") == b"first"


async def test_empty_append_object(driver: StorageDriver) -> None:
    await driver.start_append("e")
    assert await driver.append("e", chunks_of(), 0) == 0
    assert await driver.seal_append("e") == 0
    await driver.commit_append("e", "empty")
    assert await driver.get("empty") == b""


async def test_appends_per_object_are_bounded(driver: StorageDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every append lists the parts before it: their number is capped (no quadratic work on demand)."""
    import storage.base

    monkeypatch.setattr(storage.base, "MAX_APPEND_PARTS", 3)  # the bound both drivers check
    await driver.start_append("many")
    for i in range(3):
        await driver.append("many", chunks_of(b"x"), i)
    with pytest.raises(TooManyPartsError):
        await driver.append("many", chunks_of(b"x"), 3)
    assert await driver.seal_append("many") == 3


async def test_two_appends_at_one_offset_land_once(driver: StorageDriver) -> None:
    """Both start at offset 3; the one that completes first lands, the other gets OffsetMismatchError."""
    import asyncio

    await driver.start_append("t")
    await driver.append("t", chunks_of(b"abc"), 0)
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"slow-"
        await release.wait()
        yield b"bytes"

    late = asyncio.create_task(driver.append("t", slow(), 3))
    await asyncio.sleep(0.2)
    assert await driver.append("t", chunks_of(b"fast"), 3) == 7
    release.set()
    with pytest.raises(OffsetMismatchError):
        await late
    assert await driver.seal_append("t") == 7
    await driver.commit_append("t", "out")
    assert await driver.get("out") == b"abcfast"


async def test_append_wrong_offset(driver: StorageDriver) -> None:
    await driver.start_append("u")
    await driver.append("u", chunks_of(b"abc"), 0)
    with pytest.raises(OffsetMismatchError):
        await driver.append("u", chunks_of(b"def"), 1)
    assert await driver.append_size("u") == 3


async def test_append_missing(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFoundError):
        await driver.append("none", chunks_of(b"x"), 0)
    with pytest.raises(PathNotFoundError):
        await driver.append_size("none")


async def test_append_interrupted_keeps_previous_bytes(driver: StorageDriver) -> None:
    await driver.start_append("i")
    await driver.append("i", chunks_of(b"good"), 0)

    async def broken() -> AsyncIterator[bytes]:
        yield b"bad"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await driver.append("i", broken(), 4)
    assert await driver.append_size("i") == 4
    await driver.seal_append("i")
    assert await collect(driver.read_append("i")) == b"good"


async def test_abort_append(driver: StorageDriver) -> None:
    await driver.start_append("ab")
    await driver.append("ab", chunks_of(b"x" * 10), 0)
    await driver.abort_append("ab")
    with pytest.raises(PathNotFoundError):
        await driver.append_size("ab")
    await driver.abort_append("ab")


async def test_check(driver: StorageDriver) -> None:
    await driver.check()


async def test_list_sees_changes_at_once(driver: StorageDriver) -> None:
    """Listings may be cached, but never serve a stale view: every change is seen by the next list."""
    import asyncio

    await driver.put("tags/a", b"1")
    await asyncio.sleep(2.2)  # let a listing cache settle (filesystem: caches only settled directories)
    assert await driver.list("tags") == ["a"]
    assert await driver.list("tags") == ["a"]
    await driver.put("tags/b", b"2")
    assert await driver.list("tags") == ["a", "b"]
    await driver.put("tags/b", b"3")  # replaced
    await driver.delete("tags/a")
    assert await driver.list("tags") == ["b"]
