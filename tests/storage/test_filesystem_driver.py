"""Filesystem driver specifics the shared contract suite cannot observe."""

from __future__ import annotations

import os

import pytest

from storage.filesystem import TEMP_PREFIX, FilesystemDriver


def _temp_files(root: str) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n.startswith(TEMP_PREFIX)]


async def test_put_many_stops_at_a_failing_batch_and_leaves_no_temp_files(tmp_path) -> None:
    driver = FilesystemDriver(str(tmp_path / "root"))
    await driver.put("blocker", b"a file where a directory is needed")
    await driver.put("b2/first", b"old")
    with pytest.raises(NotADirectoryError):
        await driver.put_many([
            [("b1/content", b"kept")],
            [("b2/first", b"new"), ("blocker/link", b"cannot be written")],
            [("b3/tag", b"never")],
        ])
    assert await driver.get("b1/content") == b"kept"  # an earlier batch is complete
    assert await driver.get("b2/first") == b"old"  # nothing of the failing batch was renamed into place
    assert await driver.list("b3") == []  # a later batch never starts
    assert _temp_files(driver.root) == []
