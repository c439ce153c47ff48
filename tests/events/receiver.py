"""A real webhook receiver for the events tests: an aiohttp server on a loopback port, in its own
thread (so both plain and async tests can use it), that checks every delivery like a careful
consumer would: structured-mode CloudEvents 1.0 (parsed with the CloudEvents SDK), and the
`X-Trustreg-Signature` HMAC of the body against the endpoint's secret.

    POST /hooks/<endpoint>   answered 200; `hang` endpoints never answer; `fail` ones answer 500
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cloudevents.core.bindings.http import HTTPMessage, from_structured_event

from tests.s3server import free_port


@dataclass
class Delivery:
    endpoint: str
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any]  # the JSON document as sent
    arrived: float


@dataclass
class Receiver:
    secrets: dict[str, bytes] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # anything a careful receiver would refuse
    hung: int = 0

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{endpoint}"

    # --- server -------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        body = await request.read()
        if endpoint in self.hang:
            self.hung += 1
            await asyncio.Event().wait()  # until the server stops
        if endpoint in self.fail:
            return web.Response(status=500)
        problem = self._check(endpoint, request, body)
        if problem:
            self.problems.append(f"{endpoint}: {problem}")
            return web.Response(status=400, text=problem)
        self.deliveries.append(Delivery(endpoint, dict(request.headers), body, json.loads(body), time.time()))
        return web.Response(status=200)

    def _check(self, endpoint: str, request: web.Request, body: bytes) -> str | None:
        if request.headers.get("Content-Type") != "application/cloudevents+json":
            return f"content type {request.headers.get('Content-Type')}"
        secret = self.secrets.get(endpoint)
        if secret is not None:
            expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("X-Trustreg-Signature", ""), expected):
                return "bad or missing X-Trustreg-Signature"
        try:
            event = from_structured_event(HTTPMessage(dict(request.headers), body))
        except Exception as exc:  # the SDK refuses anything that is not a valid CloudEvent
            return f"not a CloudEvent: {exc}"
        attributes = event.get_attributes()
        if attributes.get("specversion") != "1.0" or not str(attributes.get("type")).startswith("io.trustreg."):
            return f"unexpected attributes {attributes}"
        return None

    def start(self) -> Receiver:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hooks/{endpoint}", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=0.1)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        started.wait(10)
        return self

    def stop(self) -> None:
        """Stop listening (connections refused from now on); `start()` again on the same port."""
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # --- assertions ---------------------------------------------------------------------------
    def of(self, endpoint: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [d.event for d in list(self.deliveries) if d.endpoint == endpoint
                and (event_type is None or d.event["type"] == f"io.trustreg.{event_type}")]

    def wait_for(self, what: Callable[[], Any], timeout: float = 30, message: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := what():
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {message or what}: got {[d.event for d in self.deliveries]}")

    def duplicates(self) -> list[tuple[str, str]]:
        """(endpoint, id) pairs delivered more than once."""
        seen: dict[tuple[str, str], int] = {}
        for d in list(self.deliveries):
            key = (d.endpoint, d.event["id"])
            seen[key] = seen.get(key, 0) + 1
        return [k for k, n in seen.items() if n > 1]
