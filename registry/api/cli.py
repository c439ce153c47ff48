"""`trustreg trust inspect [--config PATH | --url URL] <repository>[:<tag>] [--json]`.

Like `docker trust inspect` and `notary list` combined with the gate's verdict: one row per tag with
its digest, type, platforms, size, last push, every signature source's status and the decision (and
with `--url`, in a proxy project, where and when the tag was last resolved upstream).
- `--config` (or neither): in-process, on the configured storage, with the same gate code the
  server runs (with the trust key passphrase available, reading may re-sign an expiring timestamp,
  as a pull would; without it the stored trust data is read as it is, and a timestamp the server
  would re-sign shows as expired);
- `--url`: through the JSON API (`/api/v1/`), as `--user` with the password from TRUSTREG_PASSWORD.
`--json` prints the API's tag reports (a list, also for a single tag). Exit status: 0 when every
reported tag would be served, 3 when one would be refused (for CI), 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urljoin

from config.loader import Settings
from storage.base import StorageDriver
from trust.server import NotaryService
from trust.server.store import CurrentState

PAGE = 100
REFUSED = 3  # exit status when a reported tag would be refused
Report = dict[str, Any]


class InspectError(Exception):
    """A failure to show to the user (exit status 1)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", help="YAML configuration file: inspect the storage directly")
    where.add_argument("--url", help="registry URL: inspect through its JSON API")
    parser.add_argument("--user", help="user name for --url (password from TRUSTREG_PASSWORD)")
    parser.add_argument("--ca", help="CA certificate file for an https --url")
    parser.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate of --url")
    parser.add_argument("--json", action="store_true", help="print the tag reports as JSON")
    parser.add_argument("reference", metavar="REPOSITORY[:TAG]")


def split_reference(reference: str) -> tuple[str, str | None]:
    """`secure/app:1.0` -> ("secure/app", "1.0"); repository names never contain ':'."""
    name, sep, tag = reference.rpartition(":")
    if sep and name and "/" not in tag:
        return name, tag
    return reference, None


# --- the two sources ----------------------------------------------------------------------------
class ReadOnlyNotary(NotaryService):
    """The stored trust data as it is, for inspection without the key passphrase (never re-signs)."""

    def __init__(self, driver: StorageDriver) -> None:
        super().__init__(driver, "unused: this service never decrypts a key")

    async def _refresh(self, repository: str, state: CurrentState) -> CurrentState:
        return state


async def inspect_local(settings: Settings, repository: str, tag: str | None) -> list[Report]:
    """Tag reports straight from storage, with the server's own gate (no server needed)."""
    from registry.api.inspect import Inspector, RepositoryUnknownError
    from registry.cli import optional_passphrase
    from registry.enforcement import NoTrustServer
    from storage.factory import create_driver
    from storage.references import InvalidReferenceError
    from storage.store import ManifestUnknownError, RegistryStore
    from trust.gate import ContentTrustGate, TrustDataSource
    from trust.policy import Policy, PolicyHolder

    driver = create_driver(settings.storage)
    try:
        await driver.check()
        store = RegistryStore(driver)
        policy = Policy.from_config(settings.raw, getattr(settings, "config_dir", None))
        if hasattr(policy, "load_trust_roots"):
            policy.load_trust_roots()  # cosign / notation keys and certificates, as `serve` loads them
        holder = PolicyHolder(policy)
        source: TrustDataSource = NoTrustServer()
        if (settings.raw.get("trust") or {}).get("enabled", True):
            passphrase = optional_passphrase(settings)
            source = NotaryService(driver, passphrase) if passphrase else ReadOnlyNotary(driver)
        insp = Inspector(store, ContentTrustGate(store, source, holder), holder)
        try:
            if tag is not None:
                return [(await insp.tag(repository, tag)).to_json()]
            reports, _ = await insp.tags(repository)
        except (RepositoryUnknownError, ManifestUnknownError, InvalidReferenceError) as e:
            raise InspectError(str(e)) from e
        return [r.to_json() for r in reports]
    finally:
        await driver.close()


def _get_json(url: str, headers: dict[str, str], context: ssl.SSLContext | None) -> tuple[Any, str | None]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as resp:
            return json.load(resp), resp.headers.get("Link")
    except urllib.error.HTTPError as e:
        try:
            errors = json.load(e).get("errors") or [{}]
            message = errors[0].get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        raise InspectError(f"{e.code} {message}") from None
    except (urllib.error.URLError, OSError) as e:
        raise InspectError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None


def _next_link(link: str | None) -> str | None:
    if link and 'rel="next"' in link:
        return link.split(";", 1)[0].strip().strip("<>")
    return None


def inspect_url(base: str, repository: str, tag: str | None, user: str | None = None,
                password: str | None = None, ca: str | None = None, insecure: bool = False) -> list[Report]:
    """Tag reports from a registry's JSON API, following its pagination."""
    headers = {}
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    context = None
    if base.startswith("https:"):
        context = ssl.create_default_context(cafile=ca)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    root = base.rstrip("/") + "/"
    path = f"api/v1/repositories/{quote(repository)}/tags"
    if tag is not None:
        report, _ = _get_json(urljoin(root, f"{path}/{quote(tag, safe='')}"), headers, context)
        return [report]
    reports: list[Report] = []
    url: str | None = urljoin(root, f"{path}?n={PAGE}")
    while url is not None:
        page, link = _get_json(url, headers, context)
        reports.extend(page)
        nxt = _next_link(link)
        url = urljoin(root, nxt) if nxt else None
    return reports


# --- output -------------------------------------------------------------------------------------
def signature_text(sig: Report) -> str:
    text = f"{sig['source']}: {sig['status']}"
    if sig.get("signer"):
        text += f" by {sig['signer']}"
        if sig.get("keyids"):
            text += " (" + ", ".join(k[:12] for k in sig["keyids"]) + ")"
    if sig["status"] == "signed" and sig.get("expires"):
        text += f" until {sig['expires']}"
    if sig.get("reason") and sig["status"] != "signed":
        text += f" [{sig['reason']}]"
    return text


def decision_text(decision: Report) -> str:
    return "served" if decision["served"] else f"refused: {decision['reason']}"


def upstream_text(report: Report) -> str:
    """A proxy project's tag: where it was last resolved, when, and the verdict then."""
    proxy = report.get("proxy")
    if not proxy:
        return "-"
    return f"{proxy['upstream']} at {proxy['resolved']}: {proxy['verdict']}"


def format_table(reports: list[Report]) -> str:
    """A fixed-width table: one row per tag (several signature sources joined with '; '); tags of a
    proxy project (reports with `proxy`) get an UPSTREAM column."""
    proxied = any(r.get("proxy") for r in reports)
    header = ("TAG", "DIGEST", "TYPE", "PLATFORMS", "SIZE", "PUSHED", "SIGNATURES", *(("UPSTREAM",) * proxied),
              "DECISION")
    rows = [header] + [
        (r["tag"], r["digest"][:19], r["kind"], ",".join(r["platforms"]) or "-", str(r["size"]), r["pushed"] or "-",
         "; ".join(signature_text(s) for s in r["signatures"]) or "-", *((upstream_text(r),) * proxied),
         decision_text(r["decision"]))
        for r in reports
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """The subcommand: print the reports (table or JSON); 1 with a message on failure."""
    repository, tag = split_reference(args.reference)
    try:
        if args.url:
            reports = await asyncio.to_thread(
                inspect_url, args.url, repository, tag, args.user, os.environ.get("TRUSTREG_PASSWORD"),
                args.ca, args.insecure,
            )
        else:
            reports = await inspect_local(settings, repository, tag)
    except InspectError as e:
        print(f"trustreg: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reports, indent=2))
    elif not reports:
        print(f"{repository}: no tags")
    else:
        print(format_table(reports))
    return REFUSED if any(not r["decision"]["served"] for r in reports) else 0
