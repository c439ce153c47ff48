"""A tiny scriptable upstream registry (aiohttp, in a thread) for what a real one will not do on demand:
redirect blob downloads elsewhere, answer 429, demand a bearer token."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.s3server import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(config: bytes, layer: bytes) -> bytes:
    """An OCI image manifest over one config and one layer."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)}],
    }).encode()


class FakeRegistry:
    """Serves `manifests` (reference -> body) and `blobs` (digest -> body) of any repository; `hook`
    may answer a request first (return a response) and sees every request; `requests` lists them."""

    def __init__(self, hook: Callable[[web.Request], web.StreamResponse | None] | None = None,
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.hook = hook
        self.tls = tls
        self.host = host
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def add_image(self, tag: str, config: bytes, layer: bytes) -> str:
        body = image(config, layer)
        self.manifests[tag] = self.manifests[sha256(body)] = body
        self.blobs[sha256(config)] = config
        self.blobs[sha256(layer)] = layer
        return sha256(body)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        self.authorizations.append(request.headers.get("Authorization"))
        if self.hook is not None and (answer := self.hook(request)) is not None:
            return answer
        parts = request.path.split("/")
        if request.path in ("/v2/", "/v2"):
            return web.json_response({})
        if parts[-2:] == ["tags", "list"]:
            return web.json_response({"name": "/".join(parts[2:-2]),
                                      "tags": sorted(t for t in self.manifests if ":" not in t)})
        if len(parts) >= 4 and parts[-2] == "manifests" and parts[-1] in self.manifests:
            body = self.manifests[parts[-1]]
            headers = {"Docker-Content-Digest": sha256(body), "Content-Type": OCI_MANIFEST}
            return web.Response(body=None if request.method == "HEAD" else body, headers=headers)
        if len(parts) >= 4 and parts[-2] == "blobs" and parts[-1] in self.blobs:
            return web.Response(body=self.blobs[parts[-1]], content_type="application/octet-stream")
        return web.json_response({"errors": [{"code": "NOT_FOUND", "message": "unknown"}]}, status=404)

    def start(self) -> FakeRegistry:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def error(status: int, code: str, headers: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": code.lower()}]}, status=status,
                             headers=headers)
