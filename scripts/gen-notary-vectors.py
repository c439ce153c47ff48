#!/usr/bin/env python3
"""Regenerate tests/vectors/notary: Notary v1 / TUF metadata made by the real clients against the
real notary-server 0.7.0 (memory storage, local ed25519 signer, TLS from a throwaway CA), through a
recording proxy (every HTTP exchange of the clients: transcript.jsonl, docker/transcript.jsonl).

    .venv/bin/python scripts/gen-notary-vectors.py [OUTDIR]     # default tests/vectors/notary

Needs the Debian packages `notary` (CLI and notary-server), `openssl`, and for the docker set
`docker.io`, `docker-registry`, `skopeo` and `busybox-static` (dockerd runs privately, as root).
New keys and bytes every run, same structure and versions: tests read every fact from the
generated expected.json. All keys and passphrases written are THROWAWAY test material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from tests.clients.certs import make_certs, self_signed  # noqa: E402
from tests.clients.docker import start_distribution, start_dockerd  # noqa: E402
from tests.clients.image import DOCKER_ARCHIVE_REF, make_test_image  # noqa: E402
from tests.clients.notary import NotaryCLI, NotaryServer, Target, fetch  # noqa: E402
from tests.clients.recorder import RecordingProxy  # noqa: E402
from tests.s3server import free_port  # noqa: E402

GUN = "127.0.0.1:5000/library/alpine"  # a name only: the trust server is wherever notary-server listens
ROLES = ("root", "targets", "snapshot", "timestamp")
CONTENT = {
    "v1.txt": b"trustreg test vector: target v1\n",
    "v3.txt": b"trustreg test vector: target v3 (signed by targets/releases)\n",
    "v4.txt": b"trustreg test vector: target v4 (sha256+sha512, targets/releases)\n",
    # a manifest whose config is the 2-byte blob `{}` (the gate's "manifest digest" case)
    "latest.manifest.json": json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2},
        "layers": []}, separators=(",", ":")).encode(),
}
PASSPHRASE_OF_ROLE = {"root": "throwaway-root", "targets": "throwaway-targets", "snapshot": "throwaway-snapshot"}
DCT_PASSPHRASES = {"DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "throwaway-root",
                   "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "throwaway-repository"}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tuf_url(server: NotaryServer, gun: str, name: str) -> str:
    return f"{server.url}/v2/{gun}/_trust/tuf/{name}"


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def bare_keyid(cert_pem_b64: str) -> str:
    """The ID notary's key store gives a certificate's key: that of the plain `ecdsa` public key."""
    cert = x509.load_pem_x509_certificate(base64.b64decode(cert_pem_b64))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = {"keytype": "ecdsa", "keyval": {"private": None, "public": base64.b64encode(spki).decode()}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_facts(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    return {"version": doc["signed"]["version"], "expires": doc["signed"]["expires"],
            "sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
            "signed_by": [s["keyid"] for s in doc["signatures"]], "methods": [s["method"] for s in doc["signatures"]]}


def capture(server: NotaryServer, gun: str, roles: list[str], out: Path) -> dict[str, bytes]:
    """Save what `GET <role>.json` returns for every role under out/<role>.json."""
    files = {}
    for role in roles:
        data = fetch(tuf_url(server, gun, f"{role}.json"), server.ca)
        assert data is not None, f"{gun}: no {role}.json"
        write(out / f"{role}.json", data)
        files[role] = data
    return files


def decrypt_key(encrypted: Path, passphrase: str, out: Path) -> None:
    """notary's key file (PEM with role/gun headers, PKCS#8 PBES2) as plain PKCS#8 (openssl re-encodes
    notary's version-1 PrivateKeyInfo, which pyca/cryptography refuses)."""
    body = "\n".join(line for line in encrypted.read_text().splitlines() if ":" not in line)
    plain = subprocess.run(["openssl", "pkcs8", "-passin", f"pass:{passphrase}"], input=body.encode(),
                           capture_output=True, check=True).stdout
    reencoded = subprocess.run(["openssl", "pkey"], input=plain, capture_output=True, check=True).stdout
    out.write_bytes(reencoded)


def key_headers(path: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in path.read_text().splitlines() if ": " in line)


def write_transcript(path: Path, proxy: RecordingProxy) -> None:
    write(path, b"".join(json.dumps(x, sort_keys=True).encode() + b"\n" for x in proxy.take()))


def publish_collection(out: Path, work: Path, proxy: RecordingProxy, ca: Path) -> tuple[NotaryCLI, list[Target]]:
    """The notary CLI session of README.md's table; the publisher and the targets it lists."""
    content = out / "content"
    for name, data in CONTENT.items():
        write(content / name, data)
    latest, v4 = CONTENT["latest.manifest.json"], CONTENT["v4.txt"]
    cli = NotaryCLI(proxy.url, work / "publisher", ca)
    # 1: a new collection with a file target and a hash-only target (client-held snapshot key)
    cli("init", GUN)
    cli("add", GUN, "v1", str(content / "v1.txt"))
    cli("addhash", GUN, "latest", str(len(latest)), "--sha256", hashlib.sha256(latest).hexdigest())
    cli("publish", GUN)
    stale = NotaryCLI(proxy.url, work / "stale", ca)
    shutil.copytree(cli.trust_dir, stale.trust_dir)  # a client whose cache holds root 1 only
    # 2: the snapshot key moves to the server
    cli("key", "rotate", GUN, "snapshot", "-r")
    # 3a/3b: a targets/releases delegation (x509 cert), then two targets signed into it
    key_pem, cert_pem = self_signed("releases", 3650)
    write(work / "releases.key", key_pem)
    write(out / "keys" / "targets_releases.crt", cert_pem)
    cli("delegation", "add", GUN, "targets/releases", str(out / "keys" / "targets_releases.crt"), "--all-paths")
    cli("publish", GUN)
    cli("key", "import", str(work / "releases.key"), "--role", "targets/releases")
    cli("add", GUN, "v3", str(content / "v3.txt"), "--roles", "targets/releases")
    cli("addhash", GUN, "v4", str(len(v4)), "--sha256", hashlib.sha256(v4).hexdigest(),
        "--sha512", hashlib.sha512(v4).hexdigest(), "--roles", "targets/releases")
    cli("publish", GUN)
    # 4-6: root key A -> B, targets re-signed, root key B -> C
    cli("key", "rotate", GUN, "root", answer="yes\n")
    cli("remove", GUN, "v1")
    cli("add", GUN, "v1", str(content / "v1.txt"))
    cli("publish", GUN)
    cli("key", "rotate", GUN, "root", answer="yes\n")
    # 7: the stale client walks the root chain (2.root.json, 3.root.json) and sees what the publisher
    # sees; so does a fresh one
    listed = cli.targets(GUN)
    assert stale.targets(GUN) == listed, "a client with an old root must see the same targets"
    assert NotaryCLI(proxy.url, work / "fresh", ca).targets(GUN) == listed
    write_transcript(out / "transcript.jsonl", proxy)
    return cli, listed


def save_history(server: NotaryServer, files: dict[str, bytes], out: Path) -> dict[str, list[int]]:
    """Every stored version of every role (`GET <N>.<role>.json`) under out/history/<role>/<N>.json."""
    history: dict[str, list[int]] = {}
    for role, data in files.items():
        for version in range(1, json.loads(data)["signed"]["version"] + 1):
            old = fetch(tuf_url(server, GUN, f"{version}.{role}.json"), server.ca)
            if old is not None:
                write(out / "history" / role / f"{version}.json", old)
                history.setdefault(role, []).append(version)
    return history


def x509_facts(keys: dict[str, Any]) -> dict[str, Any]:
    """Per certificate key ID: the bare key ID notary's key store uses, the CN and notAfter."""
    facts = {}
    for keyid, key in sorted(keys.items()):
        if key["keytype"].endswith("-x509"):
            cert = x509.load_pem_x509_certificate(base64.b64decode(key["keyval"]["public"]))
            facts[keyid] = {"public_key_id": bare_keyid(key["keyval"]["public"]),
                            "subject_cn": cert.subject.rfc4514_string(),
                            "not_after": rfc3339(cert.not_valid_after_utc)}
    return facts


def save_private_keys(trust_dir: Path, out: Path) -> dict[str, Any]:
    """The CLI's key store files, verbatim and decrypted, under out/keys/; their facts by key ID."""
    facts = {}
    for path in sorted((trust_dir / "private").glob("*.key")):
        keyid, headers = path.stem, key_headers(path)
        role = headers["role"]
        passphrase = PASSPHRASE_OF_ROLE.get(role, "throwaway-delegation")
        encrypted = out / "keys" / f"notary-private-{keyid}.key"
        shutil.copy(path, encrypted)
        decrypted = out / "keys" / f"{role.replace('/', '_')}-{keyid[:12]}.pkcs8.pem"
        decrypt_key(path, passphrase, decrypted)
        facts[keyid] = {"role": role, "gun": headers.get("gun", ""), "passphrase": passphrase,
                        "encrypted_file": str(encrypted.relative_to(out)),
                        "decrypted_file": str(decrypted.relative_to(out))}
    return facts


def target_facts(listed: list[Target], files: dict[str, bytes]) -> dict[str, Any]:
    """Per role: name -> length and hex hashes, as signed (and as `notary list` showed them)."""
    facts: dict[str, dict[str, Any]] = {}
    for target in listed:
        hashes = json.loads(files[target.role])["signed"]["targets"][target.name]["hashes"]
        entry = {"length": target.size, **{alg: base64.b64decode(h).hex() for alg, h in sorted(hashes.items())}}
        assert entry["sha256"] == target.sha256
        facts.setdefault(target.role, {})[target.name] = entry
    return facts


def notary_set(out: Path, work: Path, server: NotaryServer, proxy: RecordingProxy) -> dict[str, Any]:
    """Publish the collection, save its files, and return expected.json's facts about it."""
    cli, listed = publish_collection(out, work, proxy, server.ca)
    files = capture(server, GUN, [*ROLES, "targets/releases"], out / "current")
    history = save_history(server, files, out)
    roots = {v: json.loads((out / "history" / "root" / f"{v}.json").read_bytes()) for v in history["root"]}
    root = json.loads(files["root"])["signed"]
    delegations = json.loads(files["targets"])["signed"]["delegations"]
    x509_keys = x509_facts({k: v for r in roots.values() for k, v in r["signed"]["keys"].items()}
                           | delegations["keys"])
    private_keys = save_private_keys(cli.trust_dir, out)
    missing = {info["public_key_id"] for info in x509_keys.values()} - set(private_keys)
    assert not missing, f"certificate keys the CLI's key store lacks (bare key ID computed wrong?): {missing}"
    return {
        "gun": GUN,
        "current": {role: file_facts(data) for role, data in files.items()},
        "history": history,
        "root_roles": root["roles"],
        "root_chain": [{"version": v, "root_keyids": r["signed"]["roles"]["root"]["keyids"],
                        "signed_by": [s["keyid"] for s in r["signatures"]]} for v, r in sorted(roots.items())],
        "key_types": {k: v["keytype"] for k, v in root["keys"].items()},
        "delegations": delegations["roles"],
        "delegation_key_types": {k: v["keytype"] for k, v in delegations["keys"].items()},
        "targets": target_facts(listed, files),
        "x509_keys": x509_keys,
        "private_keys": private_keys,
        "note": "timestamp.json expires 14 days after generation: evaluate expiry at a fixed clock",
    }


def docker_set(out: Path, work: Path, server: NotaryServer, proxy: RecordingProxy) -> dict[str, Any]:
    """Docker Content Trust: docker signs through notary-server for an image in a real distribution."""
    registry = start_distribution(work / "distribution", free_port())
    dockerd = start_dockerd()
    try:
        image = make_test_image(work / "image")
        gun = f"{registry.addr}/dct/alpine"
        dockerd.trust_ca(proxy.url.removeprefix("https://"), server.ca)
        dct = {"DOCKER_CONTENT_TRUST": "1", "DOCKER_CONTENT_TRUST_SERVER": proxy.url, **DCT_PASSPHRASES}
        dockerd.run("load", "-i", str(image.dir / "docker-archive.tar"))
        for tag in ("v1", "v2"):
            dockerd.run("tag", DOCKER_ARCHIVE_REF, f"{gun}:{tag}")
        dockerd.run("push", f"{gun}:v1", env=dct)  # the repository's targets key signs v1
        dockerd.run("trust", "key", "generate", "alice", "--dir", str(work), env=dct)
        dockerd.run("trust", "signer", "add", "--key", str(work / "alice.pub"), "alice", gun, env=dct)
        dockerd.run("push", f"{gun}:v2", env=dct)  # alice signs v2 into targets/alice and targets/releases
        dockerd.run("rmi", f"{gun}:v1", f"{gun}:v2")
        for tag in ("v1", "v2"):
            dockerd.run("pull", f"{gun}:{tag}", env=dct)
        inspect = dockerd.run("trust", "inspect", gun, env=dct).stdout
        write_transcript(out / "docker" / "transcript.jsonl", proxy)
        write(out / "docker" / "docker-trust-inspect.json", inspect.encode())
        files = capture(server, gun, [*ROLES, "targets/alice", "targets/releases"], out / "docker" / "current")
        (out / "docker" / "keys").mkdir(parents=True)
        for path in sorted((dockerd.config_dir / "trust" / "private").glob("*.key")):
            shutil.copy(path, out / "docker" / "keys" / f"docker-private-{path.name}")
        signed = {t["SignedTag"]: t["Digest"] for t in json.loads(inspect)[0]["SignedTags"]}
        return {"gun": gun, "signed_tags": signed,
                "current": {role: file_facts(data) for role, data in files.items()},
                "passphrases": DCT_PASSPHRASES}
    finally:
        dockerd.stop()
        registry.stop()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "vectors" / "notary"
    work = Path(tempfile.mkdtemp(prefix="gen-notary-vectors-"))
    staging = work / "out"
    certs = make_certs(work / "certs")
    server = NotaryServer(work / "notary-server", free_port(), certs.server_cert, certs.server_key, certs.ca)
    proxy = RecordingProxy(server.url, free_port(), certs.server_cert, certs.server_key, certs.ca)
    try:
        expected = notary_set(staging, work, server, proxy)
        expected["docker"] = docker_set(staging, work, server, proxy)
        expected["generated_at"] = rfc3339(datetime.now(UTC))  # after everything was signed
    finally:
        proxy.stop()
        server.stop()
    (staging / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    readme = out / "README.md"
    if readme.exists():
        shutil.copy(readme, staging / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(staging, out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
