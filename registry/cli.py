"""The `trustreg` command: `serve`, `gc`, `check`, `trust inspect`, `trust rekey`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys

from config.loader import ConfigError, Settings, load_settings


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, with the structured fields a record carries."""

    FIELDS = ("request_id", "method", "path", "status", "bytes", "duration", "remote", "principal",
              "repository", "reference", "digest", "previous_digest", "reason", "change")

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
    for key, path in (("certificate", settings.tls.certificate), ("key", settings.tls.key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            where = os.path.abspath(path)
            raise ConfigError(f"config error at http.tls.{key}: cannot read {where}: {e.strerror}") from e
    try:
        ctx.load_cert_chain(settings.tls.certificate, settings.tls.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"config error at http.tls: cannot load certificate/key: {e}") from e
    return ctx


def serve(settings: Settings, config_path: str | None = None, argv: list[str] | None = None) -> int:
    from registry.app import create_app
    from registry.server import serve_until_signalled
    from registry.workers import is_worker, supervise

    if settings.workers > 1 and not is_worker():
        return supervise(settings.workers, argv or ["serve"])

    # uvloop does not implement loop.sendfile, so under it aiohttp's FileResponse silently falls back
    # to reading blobs into Python in chunks (CPU, and ~2-3 MiB of RSS per concurrent download).
    # asyncio's own loop sends plain-http filesystem blobs with sendfile(2); elsewhere (S3 streams
    # through Python anyway; TLS cannot use sendfile) uvloop's cheaper small-request path wins.
    sendfile_possible = "s3" not in settings.storage and settings.tls is None
    if not sendfile_possible:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # type: ignore[attr-defined]
        except ImportError:
            pass
    ctx = ssl_context(settings)
    app = create_app(settings, config_path=config_path)
    asyncio.run(serve_until_signalled(app, settings.host, settings.port, ctx, reuse_port=settings.workers > 1))
    return 0


class NoStorageError(Exception):
    """A read-only command found no registry storage where it would read."""


def require_storage(settings: Settings, config_path: str | None) -> None:
    """NoStorageError when the filesystem root does not exist (instead of creating an empty one)."""
    if "filesystem" not in settings.storage:
        return
    root = os.path.abspath(settings.storage["filesystem"]["root"])
    if not os.path.isdir(root):
        origin = (f"storage.filesystem.root in {config_path}" if config_path else
                  "the default storage.filesystem.root; pass --config PATH to read the registry's storage")
        raise NoStorageError(f"no registry storage at {root} ({origin})")


def storage_hint(settings: Settings | None, error: Exception) -> str:
    """A storage failure at start, with who must own a filesystem root it cannot write."""
    if settings is None or "filesystem" not in settings.storage or "Permission denied" not in str(error):
        return str(error)
    root = os.path.abspath(settings.storage["filesystem"]["root"])
    uid, gid = os.getuid(), os.getgid()
    return (f"{error}; trustreg runs as uid {uid} (gid {gid}), which must own or be able to write {root} "
            f"(e.g. `chown -R {uid}:{gid} {root}` on the host, or a named volume)")


def optional_passphrase(settings: Settings) -> str | None:
    """The trust key passphrase when available (read-only commands never demand it)."""
    from registry.notary_api import key_passphrase

    try:
        return key_passphrase(settings)
    except ConfigError:
        return None


async def run_gc(settings: Settings, dry_run: bool, delete_untagged: bool, grace: float,
                 retention: bool = False) -> int:
    from storage.factory import create_driver
    from storage.gc import collect_garbage
    from storage.store import RegistryStore

    if retention:  # first: the tags (and their signatures) the rules let go, then the sweep frees them
        from registry.retention import retention_from_settings

        kept = await retention_from_settings(settings, dry_run, grace)
        tag_verb = "would delete" if dry_run else "deleted"
        for repo, tag, digest in kept.tags:
            print(f"{tag_verb} tag {repo}:{tag} ({digest}) by retention")
        for repo, digest in kept.manifests:
            print(f"{tag_verb} manifest {repo}@{digest} by retention")

    driver = create_driver(settings.storage)
    try:
        await driver.check()
        report = await collect_garbage(
            RegistryStore(driver), dry_run=dry_run, delete_untagged=delete_untagged, grace=grace
        )
    finally:
        await driver.close()
    verb = "would remove" if dry_run else "removed"
    for repo, digest in report.manifests:
        print(f"{verb} manifest {repo}@{digest}")
    for digest, size in report.blobs:
        print(f"{verb} blob {digest} ({size} bytes)")
    for repo, upload_id in report.uploads:
        print(f"{verb} upload session {repo} {upload_id}")
    print(
        f"{len(report.blobs)} blobs, {len(report.manifests)} manifests, {len(report.uploads)} upload sessions; "
        f"{report.bytes_freed} bytes {'would be ' if dry_run else ''}freed; "
        f"{report.kept_young} unreferenced blobs younger than the grace period kept"
    )
    return 0


async def run_check(settings: Settings, repair: bool) -> int:
    """`trustreg check`: one line per problem, a summary; exit 1 if anything is (still) broken."""
    from registry.check import check_storage
    from registry.notary_api import passphrase_env
    from storage.factory import create_driver

    driver = create_driver(settings.storage)
    try:
        await driver.check()
        report = await check_storage(driver, repair=repair, passphrase=optional_passphrase(settings),
                                     passphrase_env=passphrase_env(settings))
    finally:
        await driver.close()
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return 0 if (report.ok if repair else not report.problems) else 1


def healthcheck(settings: Settings, timeout: float = 2.0) -> int:
    """`trustreg healthcheck`: 0 if this host's registry answers `/healthz` (https when TLS is configured;
    the certificate is not verified: it names the public host, the check talks to loopback)."""
    import urllib.request

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = f"{'https' if settings.tls else 'http'}://{host}:{settings.port}/healthz"
    context = ssl._create_unverified_context() if settings.tls else None  # noqa: S323 - loopback liveness only
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            ok = resp.status == 200
    except OSError as e:
        print(f"trustreg: {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    return 0 if ok else 1


async def run_rekey(settings: Settings, from_dev: bool) -> int:
    """`trustreg trust rekey`: re-encrypt every server key under the configured passphrase."""
    from registry.notary_api import passphrase_env
    from registry.trust_keys import INSECURE_DEV_PASSPHRASE, rekey
    from storage.factory import create_driver

    env = passphrase_env(settings)
    new = os.environ.get(env, "")
    old = INSECURE_DEV_PASSPHRASE if from_dev else os.environ.get("TRUSTREG_OLD_TRUST_PASSPHRASE", "")
    if not new or not old:
        raise ConfigError(f"trust rekey needs the new passphrase in {env} and the old one in "
                          "TRUSTREG_OLD_TRUST_PASSPHRASE (or --from-dev)")
    driver = create_driver(settings.storage)
    try:
        await driver.check()
        done, same = await rekey(driver, old, new)
    finally:
        await driver.close()
    print(f"re-encrypted {done} trust keys under the passphrase in {env} ({same} already were)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trustreg", description="OCI registry with built-in content trust")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the registry")
    p_serve.add_argument("--config", help="YAML configuration file")
    p_serve.add_argument("--log-format", choices=["text", "json"], help="override log.format")
    p_gc = sub.add_parser("gc", help="remove unreferenced blobs (online: safe while serving)")
    p_gc.add_argument("--config", help="YAML configuration file")
    p_gc.add_argument("--dry-run", action="store_true", help="list what would be removed, change nothing")
    p_gc.add_argument("--delete-untagged", action="store_true", help="also remove manifests no tag reaches")
    p_gc.add_argument("--retention", action="store_true",
                      help="first apply the projects' retention rules (tags outside keep_last/keep_tags/"
                           "keep_signed, with their signatures; with delete_untagged, manifests nothing kept "
                           "needs, older than --grace), then sweep")
    p_gc.add_argument("--grace", type=float, default=3600.0,
                      help="seconds during which new or re-referenced content is never removed (default 3600; "
                           "at least 120 unless --offline)")
    p_gc.add_argument("--offline", action="store_true",
                      help="the registry is stopped: allow any --grace (0 removes everything unreferenced)")
    p_health = sub.add_parser("healthcheck", help="exit 0 if the registry configured here answers /healthz "
                                                   "(http or https as configured; for container health checks)")
    p_health.add_argument("--config", help="YAML configuration file")
    p_check = sub.add_parser("check", help="verify blobs, links, tags, manifests and trust data in storage")
    p_check.add_argument("--config", help="YAML configuration file")
    p_check.add_argument("--repair", action="store_true",
                         help="remove what is provably broken (torn temp files, corrupt blobs, dangling links)")
    from registry.api import cli as trust_cli

    p_trust = sub.add_parser("trust", help="content trust: signatures and the gate's decisions")
    trust_sub = p_trust.add_subparsers(dest="trust_command", required=True)
    trust_cli.add_arguments(trust_sub.add_parser(
        "inspect", help="each tag's signatures and whether the gate serves it (like docker trust inspect); "
                        "exit 3 when a tag would be refused"))
    p_rekey = trust_sub.add_parser(
        "rekey", help="re-encrypt the trust server's keys under the passphrase in TRUSTREG_TRUST_PASSPHRASE "
                      "(trust.keys.passphrase_env); the old one from TRUSTREG_OLD_TRUST_PASSPHRASE or --from-dev")
    p_rekey.add_argument("--config", help="YAML configuration file")
    p_rekey.add_argument("--from-dev", action="store_true",
                         help="the keys were made under the development passphrase (./scripts/serve.sh)")
    args = parser.parse_args(argv)

    settings: Settings | None = None
    try:
        settings = load_settings(args.config)
        if args.config is None:
            # `trustreg serve` with no configuration is a local development registry: its trust keys
            # are encrypted with the public development passphrase unless the variable is set.
            settings.raw.setdefault("trust", {}).setdefault("keys", {}).setdefault("insecure_dev_passphrase", True)
        if getattr(args, "log_format", None):  # serve only
            settings.log_format = args.log_format
        setup_logging(settings.log_level, settings.log_format)
        if args.command == "healthcheck":
            return healthcheck(settings)
        if args.command == "serve":
            return serve(settings, args.config, argv if argv is not None else sys.argv[1:])
        reads_storage = args.command in ("gc", "check") or getattr(args, "trust_command", None) in ("inspect", "rekey")
        if reads_storage and not getattr(args, "url", None):
            require_storage(settings, args.config)
        if args.command == "gc":
            from storage.gc import MIN_ONLINE_GRACE

            if args.grace < MIN_ONLINE_GRACE and not args.offline:
                print(f"trustreg: --grace below {MIN_ONLINE_GRACE:.0f} s is only safe with the registry stopped "
                      "(add --offline)", file=sys.stderr)
                return 2
            return asyncio.run(run_gc(settings, args.dry_run, args.delete_untagged, args.grace, args.retention))
        if args.command == "check":
            return asyncio.run(run_check(settings, args.repair))
        if args.command == "trust" and args.trust_command == "rekey":
            return asyncio.run(run_rekey(settings, args.from_dev))
        if args.command == "trust":
            return asyncio.run(trust_cli.run(args, settings))
    except ConfigError as e:
        print(f"trustreg: {e}", file=sys.stderr)
        return 2
    except NoStorageError as e:
        print(f"trustreg: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # startup failures (storage unreachable, port in use) exit non-zero clearly
        from storage.base import StorageError

        if isinstance(e, StorageError | OSError):
            print(f"trustreg: cannot start: {storage_hint(settings, e)}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
