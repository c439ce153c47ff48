"""A registry app served on a loopback port from a background thread, for synchronous fuzzing with raw
HTTP (hypothesis drives plain functions; the server keeps running between examples)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from config.loader import parse_settings
from registry.app import create_app
from storage.filesystem import FilesystemDriver


@dataclass
class Reply:
    method: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ThreadedServer:
    """`create_app(config)` over a FilesystemDriver at `root`, on 127.0.0.1:<free port>."""

    def __init__(self, root: Path, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        config.setdefault("trust", {"keys": {"insecure_dev_passphrase": True}})
        self.settings = parse_settings(config)
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
        self.loop.close()

    async def _start(self) -> None:
        self.app = create_app(self.settings, driver=FilesystemDriver(str(self.root)))
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. storage checks) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            headers = dict(headers or {})
            if body is not None:
                headers.setdefault("Content-Length", str(len(body)))
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders(body)
            resp = conn.getresponse()
            return Reply(method, resp.status, resp.headers, resp.read())
        finally:
            conn.close()
