"""The real `notary` CLI (Debian `notary` 0.7.0) with a private trust dir, and the Notary server it
is the oracle against (`notary-server`, memory storage, local signer)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.clients.certs import self_signed

THROWAWAY_PASSPHRASES = {  # throwaway: the CLI never prompts when these are set
    "NOTARY_ROOT_PASSPHRASE": "throwaway-root", "NOTARY_TARGETS_PASSPHRASE": "throwaway-targets",
    "NOTARY_SNAPSHOT_PASSPHRASE": "throwaway-snapshot", "NOTARY_DELEGATION_PASSPHRASE": "throwaway-delegation",
}


class NotaryError(AssertionError):
    """A notary command failed; the message carries its output."""


@dataclass
class Target:
    name: str
    sha256: str
    size: int
    role: str


class NotaryCLI:
    """`notary -c <config> -s <url> ...` with its own trust dir; `ca` verifies the server's TLS."""

    def __init__(self, url: str, workdir: Path, ca: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.url, self.dir, self.ca = url, workdir, ca
        self.env = {**os.environ, **THROWAWAY_PASSPHRASES, **(env or {})}
        workdir.mkdir(parents=True, exist_ok=True)
        remote: dict[str, str] = {"url": url}
        if ca is not None:
            remote["root_ca"] = str(ca)
        (workdir / "config.json").write_text(json.dumps({"trust_dir": str(self.trust_dir), "remote_server": remote}))

    @property
    def trust_dir(self) -> Path:
        return self.dir / "trust"

    def run(self, *args: str, answer: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `notary ...`; `answer` is what its prompts read (none: they read end of file)."""
        return subprocess.run(["notary", "-c", str(self.dir / "config.json"), "-s", self.url, *args],
                              capture_output=True, text=True, timeout=timeout, input=answer, env=self.env)

    def __call__(self, *args: str, answer: str = "") -> str:
        """Run a command that must succeed; its stdout. (The CLI exits 0 when it aborts at a prompt.)"""
        result = self.run(*args, answer=answer)
        if result.returncode != 0 or "Aborting action" in result.stdout + result.stderr:
            raise NotaryError(f"notary {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def fails(self, pattern: str, *args: str) -> str:
        """Run a command that must fail with output matching `pattern` (fail for the right reason)."""
        result = self.run(*args)
        out = result.stdout + result.stderr
        if result.returncode == 0 or not re.search(pattern, out):
            raise NotaryError(f"notary {' '.join(args)} should fail with /{pattern}/, got {result.returncode}:\n{out}")
        return out

    def sign(self, gun: str, tag: str, digest: str, size: int, role: str | None = None) -> None:
        """Sign `tag` = sha256 `digest` of `size` bytes (in `role`) and publish."""
        roles = ["--roles", role] if role else []
        self("addhash", gun, tag, str(size), "--sha256", digest.removeprefix("sha256:"), *roles)
        self("publish", gun)

    def targets(self, gun: str, *args: str) -> list[Target]:
        """`notary list`, parsed (sorted by name)."""
        lines = self("list", gun, *args).splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("----")), len(lines))
        rows = (line.split() for line in lines[start + 1:])
        found = [Target(f[0], f[1], int(f[2]), f[3]) for f in rows if len(f) >= 4]
        return sorted(found, key=lambda t: t.name)

    def lookup(self, gun: str, tag: str) -> str:
        return self("lookup", gun, tag).strip()

    def delegation_key(self, name: str = "releases", days: int = 3650) -> tuple[Path, Path]:
        """A fresh P-256 key (unencrypted PKCS#8) and its self-signed certificate (CN `name`)."""
        key, cert = self_signed(name, days)
        key_path, cert_path = self.dir / f"{name}.key", self.dir / f"{name}.crt"
        key_path.write_bytes(key)
        cert_path.write_bytes(cert)
        return key_path, cert_path

    def delegate(self, gun: str, role: str = "targets/releases") -> Path:
        """Add `role` (all paths) with a fresh certificate, publish, and import its key for signing."""
        key, cert = self.delegation_key(role.rsplit("/", 1)[-1])
        self("delegation", "add", gun, role, str(cert), "--all-paths")
        self("publish", gun)
        self("key", "import", str(key), "--role", role)
        return cert


def https_context(ca: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()


def fetch(url: str, ca: Path | None = None) -> bytes | None:
    """GET `url` (TLS verified with `ca`); None on 404."""
    try:
        with urllib.request.urlopen(url, timeout=30, context=https_context(ca)) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


class NotaryServer:
    """The real notary-server 0.7.0 on a loopback port: memory storage, local (ed25519) signer, TLS."""

    def __init__(self, workdir: Path, port: int, cert: Path, key: Path, ca: Path) -> None:
        self.ca, self.url = ca, f"https://127.0.0.1:{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {"server": {"http_addr": f"127.0.0.1:{port}", "tls_cert_file": str(cert), "tls_key_file": str(key)},
                  "trust_service": {"type": "local", "hostname": "", "port": "", "key_algorithm": "ed25519"},
                  "storage": {"backend": "memory"}, "logging": {"level": "warning"}}
        (workdir / "server.json").write_text(json.dumps(config))
        self.log = workdir / "notary-server.log"
        self.proc = subprocess.Popen(["notary-server", "-config", str(workdir / "server.json")],
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self._up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"notary-server did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def _up(self) -> bool:
        try:
            fetch(f"{self.url}/v2/", self.ca)
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def notary_scenario(url: str, ca: Path | None, gun: str, work: Path, env: dict[str, str] | None = None) -> None:
    """The notary CLI through a Docker Content Trust style life cycle against a trust server at `url`,
    for a `gun` with no trust data yet: init, publish, add (file) + addhash (manifest-like), exact
    list/lookup/verify, wrong content and unknown targets refused, remove, a server-managed snapshot
    key (root names a key the client lacks, and it signs snapshot.json), a `targets/releases`
    delegation (x509 cert) with a target in it, a fresh client (trust on first use) seeing exactly
    the same, and `delete --remote` after which a fresh client finds nothing."""
    cli = NotaryCLI(url, work / "publisher", ca, env)

    def fresh(name: str) -> NotaryCLI:
        return NotaryCLI(url, work / name, ca, env)

    files = {
        "v1": (work / "v1.bin", f"notary scenario v1 {os.getpid()}\n".encode()),
        "v2": (work / "v2.manifest", json.dumps({"schemaVersion": 2, "note": f"v2 {os.getpid()}"}).encode()),
        "v3": (work / "v3.bin", f"notary scenario v3 released {os.getpid()}\n".encode()),
    }
    for path, data in files.values():
        path.write_bytes(data)

    def target(name: str, role: str = "targets") -> Target:
        data = files[name][1]
        return Target(name, hashlib.sha256(data).hexdigest(), len(data), role)

    v1, v2, v3 = target("v1"), target("v2"), target("v3", "targets/releases")
    fresh("pre").fails("does not have trust data", "list", gun)
    cli("init", gun)
    assert "No unpublished changes" in cli("status", gun)
    cli("publish", gun)
    assert cli.targets(gun) == [] and "No targets present" in cli("list", gun)
    cli("add", gun, "v1", str(files["v1"][0]))
    cli("addhash", gun, "v2", str(v2.size), "--sha256", v2.sha256)
    assert cli("status", gun).count("create") == 2
    cli("publish", gun)
    assert "No unpublished changes" in cli("status", gun)
    assert cli.targets(gun) == [v1, v2]
    assert cli.lookup(gun, "v1") == f"v1 sha256:{v1.sha256} {v1.size}"
    assert cli.lookup(gun, "v2") == f"v2 sha256:{v2.sha256} {v2.size}"
    cli("verify", gun, "v1", "-i", str(files["v1"][0]), "-o", str(work / "v1.out"))
    assert (work / "v1.out").read_bytes() == files["v1"][1]
    (work / "bad.bin").write_bytes(b"tampered\n")
    cli.fails("checksum for v1 did not match", "verify", gun, "v1", "-i", str(work / "bad.bin"), "-q")
    cli.fails("No valid trust data for nosuchtag", "lookup", gun, "nosuchtag")
    cli("remove", gun, "v2")
    cli("publish", gun)
    assert cli.targets(gun) == [v1]
    cli.fails("No valid trust data for v2", "lookup", gun, "v2")

    cli("key", "rotate", gun, "snapshot", "-r")
    tuf = f"{url}/v2/{gun}/_trust/tuf"
    root_doc, snapshot_doc = (json.loads(fetch(f"{tuf}/{role}.json", ca) or b"null") for role in ("root", "snapshot"))
    snapshot_keys = root_doc["signed"]["roles"]["snapshot"]["keyids"]
    assert len(snapshot_keys) == 1 and snapshot_keys[0] not in cli("key", "list"), "client still holds the key"
    assert [s["keyid"] for s in snapshot_doc["signatures"]] == snapshot_keys, "snapshot not signed by the server"
    cli("add", gun, "v2", str(files["v2"][0]))
    cli("publish", gun)
    assert cli.targets(gun) == [v1, v2]

    cert = cli.delegate(gun)
    listed = cli("delegation", "list", gun)
    assert re.search(r"^targets/releases\s+\"\" <all paths>\s+[0-9a-f]{64}\s+1\s*$", listed, re.M), listed
    assert cert.exists()
    cli("add", gun, "v3", str(files["v3"][0]), "--roles", "targets/releases")
    cli("publish", gun)
    assert cli.targets(gun) == [v1, v2, v3]
    assert cli.targets(gun, "--roles", "targets/releases") == [v3]
    assert cli.lookup(gun, "v3") == f"v3 sha256:{v3.sha256} {v3.size}"
    cli("verify", gun, "v3", "-i", str(files["v3"][0]), "-q")

    tofu = fresh("fresh")
    assert tofu.targets(gun) == [v1, v2, v3]
    tofu("verify", gun, "v3", "-i", str(files["v3"][0]), "-q")
    tofu("verify", gun, "v2", "-i", str(files["v2"][0]), "-q")
    assert tofu.lookup(gun, "v1") == f"v1 sha256:{v1.sha256} {v1.size}"
    tofu.fails("checksum for v3 did not match", "verify", gun, "v3", "-i", str(files["v1"][0]), "-q")

    cli("delete", gun, "--remote")
    fresh("post").fails("does not have trust data", "list", gun)
