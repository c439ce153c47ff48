"""Running the app: listen, and on SIGTERM/SIGINT stop accepting, drain in-flight requests (bounded),
then close. (aiohttp's own shutdown stops reading request bodies at once, which would cut off uploads
in progress; draining first lets them finish.)"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from registry.handlers.common import SETTINGS
from registry.middleware import REQUEST_ID, RequestLogger
from registry.summary import log_startup

log = logging.getLogger("trustreg")
IN_FLIGHT = web.AppKey("in_flight", list)
IO_THREADS = 64
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's connection-level logger. A request its HTTP parser refuses (malformed request line,
    header, Content-Length or chunk size; aiohttp answers 400 and closes) is the client's doing: one
    short warning line, never a traceback, so unauthenticated clients cannot flood the log."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: object) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.logger.warning("%s", _refusal(exc_info, args))
        else:
            self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]

    def debug(self, msg: object, *args: object, exc_info: object = None, **kwargs: object) -> None:
        """aiohttp logs non-HTTP bytes on a fresh connection (scanners, TLS) at debug level."""
        if isinstance(exc_info, HttpProcessingError):
            self.logger.debug("%s", _refusal(exc_info, args))
        else:
            self.logger.debug(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]


def _refusal(exc: HttpProcessingError, args: tuple[object, ...]) -> str:
    """One short line: who, the status, the first line of the parser's message (client bytes, cut)."""
    detail = (exc.message or "").strip().splitlines()
    first = detail[0][:120] if detail else ""
    return f"malformed request from {args[0] if args else '-'} refused ({exc.code}): {first!r}"


class AccessLogger(RequestLogger):
    """The access log, without the requests the parser refused (they never reached the app, have no
    route or request id, and were logged once by ProtocolLog)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if REQUEST_ID in request:
            super().log(request, response, time)


@web.middleware
async def in_flight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests whose handlers are running (reading bodies, streaming responses)."""
    counter = request.app[IN_FLIGHT]
    counter[0] += 1
    try:
        return await handler(request)
    finally:
        counter[0] -= 1


async def serve_until_signalled(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    reuse_port: bool,
    drain_timeout: float = 30.0,
) -> None:
    # Blocking file I/O (writes with fsync) runs in the default pool; size it for concurrent pushes.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="trustreg-io")
    )
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("trustreg.access"),  # RequestLogger writes here
        logger=ProtocolLog(logging.getLogger("aiohttp.server"), {}),  # parser errors: one line each
        handle_signals=False,
        handler_cancellation=True,
        shutdown_timeout=drain_timeout,
        # `http.client_timeout`: a connection that sends no complete request (slow or stalled headers) is
        # closed after it; stalled bodies are cut by the handlers' reads (registry.handlers.common).
        keepalive_timeout=app[SETTINGS].client_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port, backlog=1024)
    await site.start()
    scheme = "https" if ssl_context else "http"
    log.info("trustreg listening on %s://%s:%d", scheme, host, port)
    log_startup(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("stopping: no new connections; draining %d in-flight requests", app[IN_FLIGHT][0])
        await site.stop()
        deadline = time.monotonic() + drain_timeout
        while app[IN_FLIGHT][0] > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    log.info("stopped")
