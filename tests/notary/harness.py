"""Run one scripted sequence against notary-server and trustreg and reduce it to comparable outcomes.

A scenario is a function of a `Side` (one server, a private notary CLI configuration for that scenario,
raw HTTP) returning a list of outcomes; `run_both` runs it on both servers at once (each side has its own
server, so they do not disturb each other) and returns both lists for comparison. Outcomes keep only
what must agree: exit codes, listed targets, normalized CLI output, HTTP status and error code, and the
shape of the served metadata (types, versions, roles, thresholds, key types, target and delegation
names) - never key IDs, signatures, hashes or times, which differ by construction.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.notary.servers import SERVER_NAME, TrustServer

PASSPHRASES = {
    "NOTARY_ROOT_PASSPHRASE": "differential-root",
    "NOTARY_TARGETS_PASSPHRASE": "differential-targets",
    "NOTARY_SNAPSHOT_PASSPHRASE": "differential-snapshot",
    "NOTARY_DELEGATION_PASSPHRASE": "differential-delegation",
}
SERVER_ROLES = ("timestamp", "snapshot")
_HEX = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass
class Cli:
    """The real notary CLI with one configuration (trust dir) talking to one server."""

    side: Side
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "config.json"

    def run(self, *args: str, stdin: str = "") -> dict[str, Any]:
        """Run `notary args`; the outcome: exit code and normalized output."""
        result = subprocess.run(["notary", "-c", str(self.config), "-s", self.side.server.url, *args],
                                input=stdin, capture_output=True, text=True, timeout=120,
                                env={**os.environ, **PASSPHRASES})
        return {"cmd": " ".join(args), "rc": result.returncode, "out": self.side.normalize(result.stdout)}

    def list(self, gun: str, *roles: str) -> dict[str, Any]:
        """`notary list`: exit code and the listed (name, digest, size, role) rows."""
        args = ["list", gun, *(a for r in roles for a in ("--roles", r))]
        result = subprocess.run(["notary", "-c", str(self.config), "-s", self.side.server.url, *args],
                                capture_output=True, text=True, timeout=120, env={**os.environ, **PASSPHRASES})
        rows = sorted(tuple(line.split()) for line in result.stdout.splitlines()[2:] if line.strip())
        return {"cmd": " ".join(args), "rc": result.returncode, "targets": rows}

    def clone(self, name: str) -> Cli:
        """Another CLI with a copy of this one's trust dir (the same keys and cache)."""
        other = self.side.cli(name)
        shutil.rmtree(other.home)
        shutil.copytree(self.home, other.home)
        other.config.write_text(self.config.read_text().replace(str(self.home), str(other.home)))
        return other


@dataclass
class Side:
    """One server of the pair, with its CA and a working directory for CLI configurations."""

    server: TrustServer
    ca: Path
    workdir: Path

    def cli(self, scenario: str) -> Cli:
        home = self.workdir / scenario
        home.mkdir(parents=True, exist_ok=True)
        config = {"trust_dir": str(home / "trust"), "remote_server": {"url": self.server.url, "root_ca": str(self.ca)}}
        (home / "config.json").write_text(json.dumps(config))
        return Cli(self, home)

    def normalize(self, text: str) -> str:
        text = text.replace(self.server.url, "<server>").replace(str(self.workdir), "<dir>")
        text = text.replace("sha512, sha256 hash", "sha256, sha512 hash")  # the CLI prints a Go map's keys
        return _HEX.sub("<id>", text).strip()

    def http(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One raw request: (status, body); status 0 when the server dropped the connection."""
        context = ssl.create_default_context(cafile=str(self.ca))
        request = urllib.request.Request(f"{self.server.url}{path}", data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, ConnectionError):
            return 0, b""

    def call(self, label: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
        """A raw request's outcome: status and Notary error code."""
        status, data = self.http(method, path, body, headers)
        return {"req": label, "status": status, "code": error_code(data)}

    def metadata(self, gun: str, role: str) -> dict[str, Any] | None:
        status, data = self.http("GET", f"/v2/{gun}/_trust/tuf/{role}.json")
        return json.loads(data) if status == 200 else None

    def shape(self, gun: str) -> dict[str, Any]:
        """The served metadata of `gun`, reduced to what both servers must agree on."""
        out: dict[str, Any] = {}
        root = self.metadata(gun, "root")
        if root is None:
            return {"root": None}
        managed = {r for r in SERVER_ROLES if _server_managed(self, gun, root, r)}
        out["root"] = _root_shape(root, managed)
        pending = ["targets"]
        while pending:
            role = pending.pop(0)
            md = self.metadata(gun, role)
            out[role] = _targets_shape(md) if md else None
            if md:
                pending += [d["name"] for d in md["signed"]["delegations"]["roles"]]
        for role in SERVER_ROLES:
            md = self.metadata(gun, role)
            out[role] = None if md is None else {
                "type": md["signed"]["_type"], "version": md["signed"]["version"],
                "meta": sorted(md["signed"]["meta"]), "signatures": len(md["signatures"]),
                "server_signed": role in managed}
        return out


def _server_managed(side: Side, gun: str, root: dict[str, Any], role: str) -> bool:
    status, data = side.http("GET", f"/v2/{gun}/_trust/tuf/{role}.key")
    if status != 200:
        return False
    from trust.keys import PublicKey

    keyid = PublicKey.from_dict(json.loads(data)).keyid
    return keyid in root["signed"]["roles"][role]["keyids"]


def _root_shape(root: dict[str, Any], managed: set[str]) -> dict[str, Any]:
    signed = root["signed"]
    roles = {}
    for name, role in sorted(signed["roles"].items()):
        # key types of server-held keys differ on purpose: notary-server's local signer makes ed25519
        # keys, trustreg ECDSA P-256 (both are Notary key types every client accepts)
        types = None if name in managed else sorted(signed["keys"][k]["keytype"] for k in role["keyids"])
        roles[name] = {"keys": len(role["keyids"]), "threshold": role["threshold"], "types": types}
    return {"type": signed["_type"], "version": signed["version"], "roles": roles, "keys": len(signed["keys"]),
            "signatures": len(root["signatures"])}


def _targets_shape(md: dict[str, Any]) -> dict[str, Any]:
    signed = md["signed"]
    delegations = [{"name": d["name"], "paths": d.get("paths"), "threshold": d["threshold"], "keys": len(d["keyids"])}
                   for d in signed["delegations"]["roles"]]
    return {"type": signed["_type"], "version": signed["version"], "targets": sorted(signed["targets"]),
            "delegations": delegations, "signatures": len(md["signatures"])}


def error_code(data: bytes) -> str | None:
    try:
        return json.loads(data)["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def gun(name: str) -> str:
    return f"{SERVER_NAME}/diff/{name}"


def run_both(pair: tuple[Side, Side], scenario: Callable[[Side], list[Any]]) -> tuple[list[Any], list[Any]]:
    """Run `scenario` on notary-server and on trustreg at the same time; (notary-server's, trustreg's)."""
    with ThreadPoolExecutor(2) as pool:
        reference, ours = pool.map(scenario, pair)
    return reference, ours


def multipart(parts: list[tuple[str | None, bytes]], boundary: str = "differentialboundary"
              ) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body the way the notary CLI builds a publish (field `files`)."""
    body = b""
    for filename, data in parts:
        disposition = 'form-data; name="files"' + (f'; filename="{filename}"' if filename is not None else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
