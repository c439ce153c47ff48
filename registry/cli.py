"""The `trustreg` command: `trustreg serve [--config PATH]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys

from aiohttp import web

from config.loader import ConfigError, Settings, load_settings


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, with the structured fields a record carries."""

    FIELDS = ("request_id", "method", "path", "status", "bytes", "duration", "remote")

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        out.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(settings.tls.certificate, settings.tls.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"config error at http.tls: cannot load certificate/key: {e}") from e
    return ctx


def serve(settings: Settings) -> int:
    from registry.app import create_app
    from registry.middleware import RequestLogger

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    ctx = ssl_context(settings)
    app = create_app(settings)
    scheme = "https" if ctx else "http"
    logging.getLogger("trustreg").info("trustreg listening on %s://%s", scheme, settings.addr)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=ctx,
        access_log_class=RequestLogger,
        access_log=logging.getLogger("trustreg.access"),
        print=None,
        shutdown_timeout=30,
        handler_cancellation=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trustreg", description="OCI registry with built-in content trust")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the registry")
    p_serve.add_argument("--config", help="YAML configuration file")
    p_serve.add_argument("--log-format", choices=["text", "json"], help="override log.format")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config)
        if getattr(args, "log_format", None):
            settings.log_format = args.log_format
        setup_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return serve(settings)
    except ConfigError as e:
        print(f"trustreg: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # startup failures (storage unreachable, port in use) exit non-zero clearly
        from storage.base import StorageError

        if isinstance(e, StorageError | OSError):
            print(f"trustreg: cannot start: {e}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
