"""Operations endpoints and control: /healthz, /readyz, /metrics, and configuration reload."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

from config.loader import ConfigError, Settings, load_settings
from registry.handlers.common import DRIVER, SETTINGS
from storage.base import StorageError

log = logging.getLogger("trustreg")

ReloadHook = Callable[[Settings], Awaitable[None] | None]
RELOAD_HOOKS = web.AppKey("reload_hooks", list)
CONFIG_PATH = web.AppKey("config_path", str)


async def healthz(request: web.Request) -> web.StreamResponse:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Storage is reachable and the configuration is loaded."""
    try:
        await asyncio.wait_for(request.app[DRIVER].check(), timeout=5)
    except (StorageError, TimeoutError) as e:
        return web.json_response({"status": "unavailable", "storage": str(e) or "timeout"}, status=503)
    return web.json_response({"status": "ready", "storage": request.app[DRIVER].name})


def on_reload(app: web.Application, hook: ReloadHook) -> None:
    """Register `hook(new_settings)`, called after a successful reload (SIGHUP)."""
    app[RELOAD_HOOKS].append(hook)


async def reload(app: web.Application) -> bool:
    """Re-read the config file; apply it to every hook, or keep the old one if it is invalid."""
    path = app.get(CONFIG_PATH)
    try:
        settings = load_settings(path or None)
    except ConfigError as e:
        log.error("reload refused, keeping the running configuration: %s", e)
        return False
    for hook in app[RELOAD_HOOKS]:
        try:
            result = hook(settings)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("reload hook failed; keeping its previous state")
            return False
    app[SETTINGS].raw = settings.raw
    log.info("configuration reloaded from %s", path or "defaults")
    return True


async def install_sighup(app: web.Application) -> None:
    """SIGHUP reloads the configuration without dropping connections (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload(app)))
    except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
        pass


def setup(app: web.Application, config_path: str | None) -> None:
    app[RELOAD_HOOKS] = []
    if config_path:
        app[CONFIG_PATH] = config_path
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.on_startup.append(install_sighup)
