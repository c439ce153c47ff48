"""Differential: the real notary CLI runs the same sequences against notary-server 0.7.0 and trustreg.

Each scenario works on its own GUN with its own CLI configuration per server; the outcomes (exit codes,
normalized output, listed targets, served metadata shapes) must be equal. Differences trustreg makes
on purpose are asserted as such where they show, with the reason.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.notary.harness import Side, gun, run_both
from trust.keys import PublicKey


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_same(pair: tuple[Side, Side], scenario, differences: dict[str, tuple[Any, Any]] | None = None  # type: ignore[no-untyped-def]
                ) -> list[Any]:
    """Run `scenario` on both servers; every outcome must be equal, except the raw requests named in
    `differences` (label -> (notary-server's (status, code), trustreg's)), which must be exactly those."""
    reference, ours = run_both(pair, scenario)
    for expected, got in zip(reference, ours, strict=True):
        label = expected.get("req") if isinstance(expected, dict) else None
        if differences and label in differences:
            assert ((expected["status"], expected["code"]), (got["status"], got["code"])) == differences[label]
            continue
        assert got == expected, f"notary-server: {expected}\ntrustreg:      {got}"
    return reference


def delegate_key(directory: Path, name: str) -> tuple[Path, Path, str]:
    """A delegation key: (PKCS#8 key file, self-signed certificate, the certificate's key ID)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, PublicKey.from_certificate(cert).keyid


def test_init_publish_list_remove_delete(pair: tuple[Side, Side]) -> None:
    g = gun("lifecycle")

    def scenario(side: Side) -> list[Any]:
        cli = side.cli("lifecycle")
        out = [cli.list(g), cli.run("init", g), cli.run("addhash", g, "v1", "10", "--sha256", sha("v1")),
               cli.run("publish", g), cli.list(g),
               cli.run("addhash", g, "v2", "20", "--sha256", sha("v2"), "--sha512", hashlib.sha512(b"x").hexdigest()),
               cli.run("remove", g, "v1"), cli.run("publish", g), cli.list(g),
               cli.run("addhash", g, "v3", "30", "--sha256", sha("v3"), "-p"), cli.list(g),
               cli.run("remove", g, "v3", "--publish"), cli.list(g), cli.run("remove", g, "missing", "-p")]
        out += [cli.run("delete", g), cli.list(g)]  # local delete: the remote data is still there
        fresh = side.cli("lifecycle-reader")  # another client, first use: trusts the served root
        out += [fresh.list(g), fresh.run("lookup", g, "v2"), fresh.run("lookup", g, "v1")]
        out += [side.shape(g)]
        out += [cli.run("delete", g, "--remote"), cli.list(g), fresh.list(g), side.shape(g)]
        out += [cli.run("init", g, "-p"), cli.list(g), cli.run("addhash", g, "again", "1", "--sha256", sha("a"), "-p"),
                cli.list(g), side.shape(g)]
        return out

    assert_same(pair, scenario)


def test_publishes_with_nothing_staged(pair: tuple[Side, Side]) -> None:
    """notary-server answers a publish with no files 200 (the server re-signs what it holds keys for)."""
    g = gun("empty")

    def scenario(side: Side) -> list[Any]:
        cli = side.cli("empty")
        bare = gun("empty-uninitialised")  # publish without init: the CLI initialises and publishes
        out = [cli.run("publish", bare), cli.list(bare), side.shape(bare)]
        out += [cli.run("init", g), cli.run("publish", g), cli.run("publish", g), side.shape(g)]
        out += [cli.run("key", "rotate", g, "snapshot", "-r"), side.shape(g)]
        out += [cli.run("publish", g), cli.run("publish", g), side.shape(g), cli.list(g)]
        return out

    assert_same(pair, scenario)


def test_every_key_rotation(pair: tuple[Side, Side]) -> None:
    g = gun("rotate")

    def scenario(side: Side) -> list[Any]:
        cli = side.cli("rotate")
        out = [cli.run("init", g), cli.run("addhash", g, "v1", "1", "--sha256", sha("1"), "-p")]
        steps = [("targets",), ("snapshot",), ("snapshot", "-r"), ("snapshot",), ("timestamp", "-r"),
                 ("timestamp",), ("targets", "-r"), ("snapshot", "-r")]
        for step in steps:
            out += [cli.run("key", "rotate", g, *step), side.shape(g), cli.list(g)]
        out += [cli.run("key", "rotate", g, "root", stdin="yes\n"), side.shape(g)]
        out += [cli.run("addhash", g, "v2", "2", "--sha256", sha("2"), "-p"), cli.list(g)]
        reader = side.cli("rotate-reader")  # a fresh client walks nothing: it trusts the current root
        out += [reader.list(g)]
        return out

    assert_same(pair, scenario)


def test_delegations_and_witness(pair: tuple[Side, Side], tmp_path: Path) -> None:
    g = gun("delegations")
    releases_key, releases_cert, releases_id = delegate_key(tmp_path, "releases")
    limited_key, limited_cert, limited_id = delegate_key(tmp_path, "limited")

    def scenario(side: Side) -> list[Any]:
        cli = side.cli("delegations")
        out = [cli.run("init", g, "-p"),
               cli.run("delegation", "add", g, "targets/releases", str(releases_cert), "--all-paths", "-p"),
               cli.run("delegation", "list", g),
               cli.run("key", "import", str(releases_key), "--role", "targets/releases"),
               cli.run("addhash", g, "rel", "5", "--sha256", sha("rel"), "-r", "targets/releases", "-p"),
               cli.list(g), cli.list(g, "targets/releases"),
               cli.run("delegation", "add", g, "targets/limited", str(limited_cert), "--paths", "lim/,x", "-p"),
               cli.run("delegation", "add", g, "targets/limited", "--paths", "more/", "-p"),
               cli.run("delegation", "list", g),
               cli.run("key", "import", str(limited_key), "--role", "targets/limited"),
               cli.run("addhash", g, "lim/ok", "1", "--sha256", sha("ok"), "-r", "targets/limited", "-p"),
               # outside the delegation's paths: the CLI refuses to stage it for that role
               cli.run("addhash", g, "other", "1", "--sha256", sha("other"), "-r", "targets/limited", "-p"),
               cli.run("status", g), cli.run("reset", g, "--all"),
               cli.list(g), cli.list(g, "targets/limited"),
               cli.run("witness", g, "targets/releases", "-p"), side.shape(g),
               cli.run("witness", g, "targets", "targets/limited"), cli.run("publish", g), side.shape(g),
               cli.run("delegation", "remove", g, "targets/limited", limited_id, "-p"),
               cli.run("delegation", "list", g), side.shape(g),
               cli.run("delegation", "purge", g, "--key", releases_id, "-p"),
               cli.run("delegation", "list", g), cli.list(g), side.shape(g),
               cli.run("delegation", "remove", g, "targets/releases", "-p", stdin="yes\n"),
               cli.run("delegation", "list", g), cli.list(g), side.shape(g),
               # witnessing a role that does not exist: the publish fails in the client, nothing is sent
               cli.run("witness", g, "targets/nothing", "-p"), side.shape(g)]
        return out

    assert_same(pair, scenario)


def test_concurrent_publishes(pair: tuple[Side, Side]) -> None:
    """Two clients holding the same keys publish at once: each either succeeds or is refused (the server
    never interleaves them), and what is listed afterwards is exactly what the successful ones added."""
    g = gun("concurrent")

    def scenario(side: Side) -> list[Any]:
        first = side.cli("concurrent-a")
        setup = [first.run("init", g, "-p")]
        second = first.clone("concurrent-b")
        results: dict[str, dict[str, Any]] = {}
        for name, cli in (("a", first), ("b", second)):
            cli.run("addhash", g, name, "1", "--sha256", sha(name))
        threads = [threading.Thread(target=lambda n=n, c=c: results.__setitem__(n, c.run("publish", g)))
                   for n, c in (("a", first), ("b", second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = {n for n, r in results.items() if r["rc"] == 0}
        listed = {row[0] for row in side.cli("concurrent-reader").list(g)["targets"]}
        # the winner's target is there; a loser's only if it published after the winner (then it built on it)
        return [setup, bool(won), won <= listed <= {"a", "b"}, listed == won or listed == {"a", "b"}]

    assert_same(pair, scenario)
