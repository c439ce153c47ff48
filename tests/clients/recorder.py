"""A recording TLS reverse proxy: put it between a client and a server to capture every HTTP
exchange (what scripts/gen-notary-vectors.py writes as transcript.jsonl)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


def body_record(data: bytes) -> str | dict[str, str]:
    """A body as text, or `{"base64": ...}` when it is not UTF-8."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


class RecordingProxy:
    """Serves https://127.0.0.1:`port` with `cert`/`key` and forwards everything to `upstream`
    (TLS verified with `ca`); `exchanges` holds one record per request, in order."""

    def __init__(self, upstream: str, port: int, cert: Path, key: Path, ca: Path) -> None:
        self.upstream, self.url = upstream, f"https://127.0.0.1:{port}"
        self.exchanges: list[dict[str, Any]] = []
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ssl.load_cert_chain(cert, key)
        self._client_ssl = ssl.create_default_context(cafile=str(ca))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the recording proxy did not start")

    def take(self) -> list[dict[str, Any]]:
        """The exchanges recorded so far (numbered from 1), forgetting them."""
        taken, self.exchanges = self.exchanges, []
        return [{"seq": n, **x} for n, x in enumerate(taken, 1)]

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start(port))
        self._ready.set()
        self._loop.run_forever()

    async def _start(self, port: int) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._client_ssl))
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self._server_ssl).start()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, allow_redirects=False) as resp:
            answer = await resp.read()
            resp_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        self.exchanges.append({
            "method": request.method, "path": request.path_qs, "req_headers": dict(request.headers),
            "req_body": body_record(body), "status": resp.status, "resp_headers": resp_headers,
            "resp_body": body_record(answer),
        })
        return web.Response(status=resp.status, body=answer, headers=resp_headers)

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(20)
