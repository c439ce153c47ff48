"""Request coalescing: concurrent misses of one key share one upstream fetch (in this process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class Flights:
    """One task per key in flight; every caller awaits it (shielded: a caller that goes away does not
    cancel the fetch the others wait for)."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}

    def start(self, key: Hashable, work: Callable[[], Awaitable[Any]]) -> tuple[asyncio.Task[Any], bool]:
        """The task in flight for `key` and False, or a new one running `work` and True."""
        task = self._tasks.get(key)
        if task is not None:
            return task, False
        task = asyncio.ensure_future(work())
        self._tasks[key] = task

        def done(t: asyncio.Task[Any]) -> None:
            if self._tasks.get(key) is t:
                del self._tasks[key]
            if not t.cancelled():
                t.exception()  # retrieved: no "never retrieved" warning when every caller left

        task.add_done_callback(done)
        return task, True

    def running(self, key: Hashable) -> bool:
        return key in self._tasks

    async def run(self, key: Hashable, work: Callable[[], Awaitable[Any]]) -> Any:
        task, _ = self.start(key, work)
        return await asyncio.shield(task)
