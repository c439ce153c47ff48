"""cosign and notation end to end: the REAL tools (from Debian's newer suites, installed by
scripts/install-signing-tools.sh) sign images in trustreg; skopeo and containerd pull them from enforced
projects; unsigned, wrongly keyed and tampered images are refused with 412; and the real verifiers
accept signatures made in Python (tests/signatures/factory.py).

trustreg runs over plain HTTP with authentication: `alice` may push (and is exempt from the gate when
reading by digest, as `cosign sign` / `notation sign` do), anonymous pulls are gated.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.e2e.conftest import Server, require, start_server
from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401  (fixture)
from tests.helpers import digest_of
from tests.signatures import factory
from tests.signatures.factory import RELEASE_DN, Artifact, ec_key, make_pki, private_pem, public_pem, tag_for

TOOLS = Path(os.environ.get("TRUSTREG_SIGNING_TOOLS", "/opt/trustreg-signing-tools"))
ALICE = ("alice", "alice-sig-e2e")  # push: exempt when reading by digest or HEAD
CAROL = ("carol", "carol-sig-e2e")  # pull only: gated, like any consumer
COSIGN_REFUSAL = "The image is not signed by cosign."
NOTATION_REFUSAL = "The image is not signed by notation."


def tool(name: str) -> str:
    """The binary from PATH or the tools directory; skip (or fail in CI) when it is missing."""
    found = shutil.which(name) or (str(TOOLS / "bin" / name) if (TOOLS / "bin" / name).exists() else None)
    if found:
        return found
    error = TOOLS / "install-error"
    reason = error.read_text().strip() if error.exists() else f"{name} not installed (scripts/install-signing-tools.sh)"
    if os.environ.get("TRUSTREG_REQUIRE_E2E") == "1" and not error.exists():
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Env:
    server: Server
    home: Path
    image: Path
    digests: dict[str, str]
    keys: Path
    pki: factory.Pki
    py_key: Any

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        private = {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                   "DOCKER_CONFIG": str(self.home / "docker")}
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                                env={**os.environ, **private, **(env or {})})
        if check:
            assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def push(self, repo: str, ref: str = "v1") -> str:
        """skopeo copies the harness image `ref` to `<repo>:v1` (as alice); returns its digest."""
        self.run("skopeo", "copy", "--dest-tls-verify=false", f"--dest-creds={ALICE[0]}:{ALICE[1]}",
                 f"oci:{self.image}/oci:{ref}", f"docker://{self.server.addr}/{repo}:v1")
        return self.digests["AMD64_MANIFEST" if ref == "v1" else "ARM64_MANIFEST"]

    def pull(self, repo: str, check: bool = True) -> subprocess.CompletedProcess:
        """carol's skopeo pull of `<repo>:v1`."""
        out = self.home / "out" / repo.replace("/", "_")
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        return self.run("skopeo", "copy", "--src-tls-verify=false", f"--src-creds={CAROL[0]}:{CAROL[1]}",
                        f"docker://{self.server.addr}/{repo}:v1",
                        f"oci:{out}:v1", check=check)

    def refused(self, repo: str, message: str) -> str:
        """Pull `<repo>:v1`, expect the 412 `message`; returns the reason the server logged."""
        result = self.pull(repo, check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        marker = f"content trust refused GET {repo}:v1 "
        lines = [line for line in self.server.log().splitlines() if marker in line]
        assert lines, self.server.log()[-3000:]
        return lines[-1].split(f" for {CAROL[0]}: ", 1)[-1]

    def http(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> bytes:
        headers = {"Authorization": "Basic " + base64.b64encode(":".join(ALICE).encode()).decode()}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(f"{self.server.url}{path}", data=body, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.read()

    def push_artifact(self, repo: str, artifact: Artifact) -> str:
        for blob in artifact.blobs:
            self.http("POST", f"/v2/{repo}/blobs/uploads/?digest={digest_of(blob)}", blob)
        ref = artifact.tag or artifact.digest
        self.http("PUT", f"/v2/{repo}/manifests/{ref}", artifact.manifest, json.loads(artifact.manifest)["mediaType"])
        return artifact.digest

    def subject(self, repo: str, digest: str) -> dict[str, Any]:
        body = self.http("GET", f"/v2/{repo}/manifests/{digest}")  # alice: exempt by digest
        return {"mediaType": json.loads(body)["mediaType"], "digest": digest, "size": len(body)}


def make_env(test_image: Path, tmp_path: Path, token_auth: bool = False, public: bool = False,
             extra: dict[str, Any] | None = None) -> Env:
    """trustreg with project `cosigned` (cosign, root `ci`) and `notarized` (notation, root `corp`),
    its config in `srv/` with the trust roots' files under `srv/keys` (relative paths); Basic auth
    and private projects unless told otherwise; `extra` adds trust roots and projects."""
    require("skopeo")
    home, srv = tmp_path / "home", tmp_path / "srv"
    keys = srv / "keys"
    for d in (home / "docker", home / ".config", keys):
        d.mkdir(parents=True)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("".join(f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(5)).decode()}\n"
                                for user, pw in (ALICE, CAROL)))
    digests = dict(line.split("=", 1) for line in (test_image / "digests.env").read_text().splitlines() if "=" in line)
    e = Env(None, home, test_image, digests, keys, make_pki(), ec_key())  # type: ignore[arg-type]
    (keys / "py.pub").write_text(public_pem(e.py_key))
    (keys / "root.pem").write_text(e.pki.root_pem())
    cosign = tool("cosign")
    for name in ("ci", "other"):
        e.run(cosign, "generate-key-pair", "--output-key-prefix", str(keys / name), env={"COSIGN_PASSWORD": "e2e"})
    members = {ALICE[0]: ["pull", "push", "delete"], CAROL[0]: ["pull"]}
    config = {
        "auth": {"htpasswd": str(htpasswd), **({"token": {"service": "trustreg-e2e"}} if token_auth else {})},
        "trust": {"keys": {"insecure_dev_passphrase": True}},
        "trust_roots": {"ci": {"type": "cosign-key", "public_keys": ["keys/ci.pub", "keys/py.pub"]},
                        "corp": {"type": "x509-ca", "certificates": ["keys/root.pem"]}},
        "projects": {
            "cosigned": {"members": members, "public": public, "content_trust": {
                "enforce": True, "require_any": [{"cosign": {"trust_root": "ci"}}]}},
            "notarized": {"members": members, "public": public, "content_trust": {
                "enforce": True, "require_any": [{"notation": {
                    "trust_root": "corp", "identities": [f"x509.subject: {RELEASE_DN}"]}}]}},
        },
    }
    for section, entries in (extra or {}).items():
        for entry in entries.values():
            if section == "projects":
                entry.setdefault("members", members)
        config[section].update(entries)
    e.server = start_server(srv, config)
    for user, creds in (("docker", ALICE), ("reader", CAROL)):  # DOCKER_CONFIG dirs for cosign
        (home / user).mkdir(exist_ok=True)
        auth = base64.b64encode(":".join(creds).encode()).decode()
        (home / user / "config.json").write_text(json.dumps({"auths": {e.server.addr: {"auth": auth}}}))
    return e


@pytest.fixture
def env(test_image: Path, tmp_path: Path) -> Iterator[Env]:
    """`make_env` with Basic auth and private projects."""
    e = make_env(test_image, tmp_path)
    yield e
    e.server.stop()


COSIGN_FLAGS = ("--allow-http-registry", "--allow-insecure-registry")


def ctr_pull(containerd: Containerd, ref: str, check: bool = True) -> subprocess.CompletedProcess:  # noqa: F811
    """containerd (the kubelet's image path) pulls as carol over plain HTTP."""
    return containerd.ctr("images", "pull", "--plain-http", "--user", ":".join(CAROL), ref, check=check)


def cosign_sign(e: Env, key: str, ref: str, *extra: str) -> None:
    """cosign 3 signs offline with a key: no signing config, no transparency log upload."""
    e.run(tool("cosign"), "sign", "--key", str(e.keys / f"{key}.key"), "--use-signing-config=false",
          "--tlog-upload=false", *COSIGN_FLAGS, "-y", *extra, ref, env={"COSIGN_PASSWORD": "e2e"})


def cosign_verify(e: Env, key: Path, ref: str, check: bool = True) -> subprocess.CompletedProcess:
    # as carol (pull only), so the verifier's own reads of the image go through the gate
    return e.run(tool("cosign"), "verify", "--key", str(key), "--insecure-ignore-tlog=true", *COSIGN_FLAGS, ref,
                 check=check, env={"DOCKER_CONFIG": str(e.home / "reader")})


def test_cosign_real_tool(env: Env, containerd: Containerd) -> None:  # noqa: F811
    e, addr = env, env.server.addr
    legacy, bundle = e.push("cosigned/legacy"), e.push("cosigned/bundle")
    e.push("cosigned/unsigned")
    wrong = e.push("cosigned/wrongkey")
    cosign_sign(e, "ci", f"{addr}/cosigned/legacy@{legacy}", "--new-bundle-format=false")
    cosign_sign(e, "ci", f"{addr}/cosigned/bundle@{bundle}")
    cosign_sign(e, "other", f"{addr}/cosigned/wrongkey@{wrong}", "--new-bundle-format=false")
    # the two storage forms really were written: the `.sig` tag, and a bundle referrer
    assert e.http("GET", f"/v2/cosigned/legacy/manifests/{tag_for(legacy, '.sig')}")
    referrers = json.loads(e.http("GET", f"/v2/cosigned/bundle/referrers/{bundle}"))["manifests"]
    assert [r.get("artifactType") for r in referrers] == [factory.BUNDLE], referrers

    for repo in ("cosigned/legacy", "cosigned/bundle"):
        e.pull(repo)
        cosign_verify(e, e.keys / "ci.pub", f"{addr}/{repo}:v1")
    assert "no signature found" in e.refused("cosigned/unsigned", COSIGN_REFUSAL)
    assert "signature does not verify" in e.refused("cosigned/wrongkey", COSIGN_REFUSAL)

    # tampered 1: a genuine signature of another digest copied to this image's .sig tag
    copied = e.push("cosigned/copied")
    other = e.push("cosigned/copied", "v1-arm64")  # the tag now points at the arm64 manifest...
    cosign_sign(e, "ci", f"{addr}/cosigned/copied@{other}", "--new-bundle-format=false")
    e.push("cosigned/copied")  # ...and back at the amd64 one, which is not signed
    sig = e.http("GET", f"/v2/cosigned/copied/manifests/{tag_for(other, '.sig')}")
    e.http("PUT", f"/v2/cosigned/copied/manifests/{tag_for(copied, '.sig')}", sig, factory.OCI_MANIFEST)
    assert "signed a different digest" in e.refused("cosigned/copied", COSIGN_REFUSAL)

    # tampered 2: the signed payload blob swapped for another one (same claim, other bytes)
    swapped = e.push("cosigned/swapped")
    cosign_sign(e, "ci", f"{addr}/cosigned/swapped@{swapped}", "--new-bundle-format=false")
    doc = json.loads(e.http("GET", f"/v2/cosigned/swapped/manifests/{tag_for(swapped, '.sig')}"))
    payload = factory.simple_signing_payload(swapped, f"{addr}/cosigned/elsewhere")
    e.http("POST", f"/v2/cosigned/swapped/blobs/uploads/?digest={digest_of(payload)}", payload)
    doc["layers"][0].update(digest=digest_of(payload), size=len(payload))
    e.http("PUT", f"/v2/cosigned/swapped/manifests/{tag_for(swapped, '.sig')}", json.dumps(doc).encode(),
           factory.OCI_MANIFEST)
    assert "signature does not verify" in e.refused("cosigned/swapped", COSIGN_REFUSAL)
    assert cosign_verify(e, e.keys / "ci.pub", f"{addr}/cosigned/swapped:v1", check=False).returncode != 0

    # containerd (the kubelet's path) pulls the signed images and is refused the others
    for repo in ("cosigned/legacy", "cosigned/bundle"):
        ctr_pull(containerd, f"{addr}/{repo}:v1")
    for repo in ("cosigned/unsigned", "cosigned/wrongkey", "cosigned/copied"):
        refused = ctr_pull(containerd, f"{addr}/{repo}:v1", check=False)
        assert refused.returncode != 0 and "412" in refused.stderr + refused.stdout, refused.stderr


def notation_setup(e: Env) -> None:
    """Signing keys `release` (the trusted identity) and `intern` (same CA, other CN), the CA in trust
    store `ca:corp`, and a strict trust policy for the release identity (notation's own files)."""
    conf = e.home / ".config" / "notation"
    store = conf / "truststore" / "x509" / "ca" / "corp"
    store.mkdir(parents=True)
    (store / "root.pem").write_text(e.pki.root_pem())
    keys = []
    intern = make_pki("C=US, ST=WA, O=TrustReg Test, CN=intern", root=(e.pki.root_key, e.pki.root))
    for name, pki in (("release", e.pki), ("intern", intern)):
        (conf / f"{name}.key").write_bytes(private_pem(pki.leaf_key))
        (conf / f"{name}.crt").write_bytes(pki.chain_pem())
        keys.append({"name": name, "keyPath": str(conf / f"{name}.key"), "certPath": str(conf / f"{name}.crt")})
    (conf / "signingkeys.json").write_text(json.dumps({"default": "release", "keys": keys}))
    policy = {"version": "1.0", "trustPolicies": [{
        "name": "trustreg-e2e", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:corp"], "trustedIdentities": [f"x509.subject: {RELEASE_DN}"]}]}
    (conf / "trustpolicy.json").write_text(json.dumps(policy))  # where `notation policy import` writes it


def notation_sign(e: Env, key: str, ref: str, *extra: str) -> None:
    e.run(tool("notation"), "sign", "--insecure-registry", "-u", ALICE[0], "-p", ALICE[1], "--key", key, *extra, ref)


def notation_verify(e: Env, ref: str, check: bool = True) -> subprocess.CompletedProcess:
    return e.run(tool("notation"), "verify", "--insecure-registry", "-u", CAROL[0], "-p", CAROL[1], ref, check=check)


def test_notation_real_tool(env: Env, containerd: Containerd) -> None:  # noqa: F811
    e, addr = env, env.server.addr
    notation_setup(e)
    jws, cose = e.push("notarized/jws"), e.push("notarized/cose")
    e.push("notarized/unsigned")
    intern = e.push("notarized/intern")
    notation_sign(e, "release", f"{addr}/notarized/jws@{jws}")
    notation_sign(e, "release", f"{addr}/notarized/cose@{cose}", "--signature-format", "cose")
    notation_sign(e, "intern", f"{addr}/notarized/intern@{intern}")
    referrers = json.loads(e.http("GET", f"/v2/notarized/cose/referrers/{cose}"))["manifests"]
    assert [r.get("artifactType") for r in referrers] == [factory.NOTATION], referrers
    assert json.loads(e.http("GET", f"/v2/notarized/cose/manifests/{referrers[0]['digest']}"))["layers"][0][
        "mediaType"] == factory.COSE

    for repo, digest in (("notarized/jws", jws), ("notarized/cose", cose)):
        e.pull(repo)
        notation_verify(e, f"{addr}/{repo}@{digest}")
        ctr_pull(containerd, f"{addr}/{repo}:v1")
    assert "no signature found" in e.refused("notarized/unsigned", NOTATION_REFUSAL)
    assert "identity not trusted" in e.refused("notarized/intern", NOTATION_REFUSAL)
    refused = ctr_pull(containerd, f"{addr}/notarized/intern:v1", check=False)
    assert refused.returncode != 0 and "412" in refused.stderr + refused.stdout, refused.stderr

    # tampered: the envelope blob swapped for the one signed for another image (same signer)
    swapped = e.push("notarized/swapped")
    other = e.push("notarized/swapped", "v1-arm64")
    notation_sign(e, "release", f"{addr}/notarized/swapped@{other}")
    e.push("notarized/swapped")
    signature = json.loads(e.http("GET", f"/v2/notarized/swapped/referrers/{other}"))["manifests"][0]
    doc = json.loads(e.http("GET", f"/v2/notarized/swapped/manifests/{signature['digest']}"))
    doc["subject"] = e.subject("notarized/swapped", swapped)
    e.http("PUT", f"/v2/notarized/swapped/manifests/{digest_of(json.dumps(doc).encode())}", json.dumps(doc).encode(),
           factory.OCI_MANIFEST)
    assert "signed a different digest" in e.refused("notarized/swapped", NOTATION_REFUSAL)
    assert notation_verify(e, f"{addr}/notarized/swapped@{swapped}", check=False).returncode != 0


def test_real_verifiers_accept_python_signatures(env: Env) -> None:
    """Signatures made in Python are served by trustreg AND accepted by `cosign verify` / `notation verify`."""
    e, addr = env, env.server.addr
    notation_setup(e)
    (e.keys.parent / "py.pub").write_text(public_pem(e.py_key))
    legacy, bundle = e.push("cosigned/pylegacy"), e.push("cosigned/pybundle")
    e.push_artifact("cosigned/pylegacy", factory.cosign_legacy(legacy, [e.py_key]))
    e.push_artifact("cosigned/pybundle", factory.cosign_bundle(e.subject("cosigned/pybundle", bundle), e.py_key))
    for repo in ("cosigned/pylegacy", "cosigned/pybundle"):
        e.pull(repo)
        cosign_verify(e, e.keys / "py.pub", f"{addr}/{repo}:v1")
    jws, cose = e.push("notarized/pyjws"), e.push("notarized/pycose")
    e.push_artifact("notarized/pyjws", factory.notation_signature(e.pki, e.subject("notarized/pyjws", jws)))
    e.push_artifact("notarized/pycose", factory.notation_signature(e.pki, e.subject("notarized/pycose", cose),
                                                                   cose=True))
    for repo, digest in (("notarized/pyjws", jws), ("notarized/pycose", cose)):
        e.pull(repo)
        notation_verify(e, f"{addr}/{repo}@{digest}")


def test_notation_signs_in_a_public_enforced_project_with_token_auth(test_image: Path, tmp_path: Path) -> None:
    """`notation sign` probes the subject anonymously and authenticates only when challenged: in a
    public enforced project (token auth) the refused anonymous HEAD is answered with the challenge,
    so notation signs; anonymous pulls are refused before and served after."""
    e = make_env(test_image, tmp_path, token_auth=True, public=True)
    try:
        addr = e.server.addr
        notation_setup(e)
        digest = e.push("notarized/public")
        anonymous = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{addr}/notarized/public:v1",
                     f"oci:{tmp_path / 'anonymous'}:v1"]
        refused = e.run(*anonymous, check=False)
        assert refused.returncode != 0 and NOTATION_REFUSAL in refused.stderr, refused.stderr
        notation_sign(e, "release", f"{addr}/notarized/public@{digest}")
        e.run(*anonymous)
        e.pull("notarized/public")
        notation_verify(e, f"{addr}/notarized/public@{digest}")
    finally:
        e.server.stop()
