"""Signing like 2026, end to end with the real tools: a multi-arch image whose index alone is signed by
the real `cosign sign` is pulled by containerd's CRI `PullImage` (the kubelet's path: the tag resolves
to the index, the platform manifest is fetched by digest), and an unsigned multi-arch image is refused;
keyless signatures of a private Sigstore instance are checked by the real `cosign verify --trusted-root`
(the oracle) before trustreg judges them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.conftest_containerd import Containerd, containerd  # noqa: F401  (fixture)
from tests.e2e.test_signatures import ALICE, CAROL, COSIGN_FLAGS, COSIGN_REFUSAL, Env, cosign_sign, make_env, tool
from tests.keyless.sigstore_instance import GITHUB, SigstoreInstance, legacy_attestation, other_ca
from tests.keyless.test_attestations import slsa_statement


@pytest.fixture
def public_env(test_image: Path, tmp_path: Path) -> Iterator[Env]:
    """trustreg with public enforced projects (anonymous pulls are gated, as the kubelet's are)."""
    e = make_env(test_image, tmp_path, public=True)
    yield e
    e.server.stop()


def push_multi(e: Env, repo: str) -> str:
    """skopeo copies the harness's multi-arch image (index and both platforms) to `<repo>:v1`."""
    e.run("skopeo", "copy", "--all", "--dest-tls-verify=false", f"--dest-creds={ALICE[0]}:{ALICE[1]}",
          f"oci:{e.image}/oci:multi", f"docker://{e.server.addr}/{repo}:v1")
    return e.digests["INDEX_DIGEST"]


def plain_http(containerd: Containerd, addr: str) -> None:  # noqa: F811
    """The CRI plugin talks plain HTTP to `addr` (registry config_path hosts.toml)."""
    d = containerd.hosts_dir / addr
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(f'server = "http://{addr}"\n\n[host."http://{addr}"]\n'
                                  '  capabilities = ["pull", "resolve"]\n')


def test_cri_pulls_multiarch_image_whose_index_alone_is_cosign_signed(public_env: Env,
                                                                      containerd: Containerd) -> None:  # noqa: F811
    e, addr = public_env, public_env.server.addr
    plain_http(containerd, addr)
    index = push_multi(e, "cosigned/multi")
    push_multi(e, "cosigned/multiunsigned")
    cosign_sign(e, "ci", f"{addr}/cosigned/multi@{index}", "--new-bundle-format=false")
    # only the index is signed: nothing refers to the platform manifests
    for platform in ("AMD64_MANIFEST", "ARM64_MANIFEST"):
        sig = e.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"--creds={ALICE[0]}:{ALICE[1]}",
                    f"docker://{addr}/cosigned/multi:{e.digests[platform].replace(':', '-')}.sig", check=False)
        assert sig.returncode != 0, sig.stdout

    # the platform image was pulled: its manifest came by digest, served on the index's verdict
    assert containerd.cri_pull(f"{addr}/cosigned/multi:v1") == e.digests["AMD64_CONFIG"]
    with pytest.raises(grpc.RpcError) as refused:
        containerd.cri_pull(f"{addr}/cosigned/multiunsigned:v1")
    assert "412" in str(refused.value) or "Precondition" in str(refused.value), refused.value
    # the unsigned image's platform manifest, by digest, is refused with the cosign reason too
    by_digest = e.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"--creds={CAROL[0]}:{CAROL[1]}",
                      f"docker://{addr}/cosigned/multiunsigned@{e.digests['AMD64_MANIFEST']}", check=False)
    assert by_digest.returncode != 0 and COSIGN_REFUSAL in by_digest.stderr, by_digest.stderr


RELEASE_REGEXP = r"^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*$"


def cosign_verify_keyless(e: Env, root: Path, ref: str, *extra: str, identity: str = RELEASE_REGEXP,
                          issuer: str = GITHUB, check: bool = True) -> subprocess.CompletedProcess:
    """The real `cosign verify` against the private instance's trusted_root.json, as carol (gated)."""
    return e.run(tool("cosign"), "verify", "--trusted-root", str(root), "--certificate-identity-regexp", identity,
                 "--certificate-oidc-issuer", issuer, *COSIGN_FLAGS, *extra, ref, check=check,
                 env={"DOCKER_CONFIG": str(e.home / "reader")})


def test_keyless_signatures_checked_by_real_cosign_then_served(test_image: Path, tmp_path: Path) -> None:
    """A private Sigstore instance signs keyless (bundle v0.3 referrer and legacy `.sig`); the real
    cosign verifies both against its trusted_root.json; trustreg, configured with the same file, serves
    them, and refuses what cosign refuses too (another identity, an untrusted CA, a missing SCT)."""
    instance = SigstoreInstance()
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(instance.trusted_root()))
    identities = [{"issuer": GITHUB, "subject_regexp": RELEASE_REGEXP}]
    keyless = {"cosign": {"trust_root": "private-sigstore", "identities": identities}}
    extra = {"trust_roots": {"private-sigstore": {"type": "sigstore", "trusted_root": str(root)}},
             "projects": {"keyless": {"content_trust": {"enforce": True, "require_any": [keyless]}},
                          "keylessatt": {"content_trust": {"enforce": True, "require_any": [keyless], "attestations": [
                              {"name": "provenance", "predicate_type": "https://slsa.dev/provenance/v1",
                               "signed_by": [keyless], "policy": PROVENANCE_POLICY}]}}}}
    e = make_env(test_image, tmp_path, extra=extra)
    try:
        addr = e.server.addr
        bundle, legacy, tsa = e.push("keyless/bundle"), e.push("keyless/legacy"), e.push("keyless/tsa")
        e.push_artifact("keyless/bundle", instance.bundle(e.subject("keyless/bundle", bundle)))
        e.push_artifact("keyless/legacy", instance.legacy(legacy))
        # signing time from the instance's TSA only (the log entry carries no promise)
        e.push_artifact("keyless/tsa", instance.bundle(e.subject("keyless/tsa", tsa), promise=False,
                                                       timestamp_by=instance))
        for repo in ("keyless/bundle", "keyless/legacy"):
            cosign_verify_keyless(e, root, f"{addr}/{repo}:v1")  # the oracle first
            e.pull(repo)
        # cosign counts RFC 3161 time only when told to (by default it requires the log's promise)
        cosign_verify_keyless(e, root, f"{addr}/keyless/tsa:v1", "--use-signed-timestamps")
        e.pull("keyless/tsa")
        # keyless attestations, both forms: the real `cosign verify-attestation` accepts them, then trustreg
        for repo, form in (("keylessatt/bundle", "bundle"), ("keylessatt/legacy", "legacy")):
            digest = e.push(repo)
            # signed in the same form (cosign reads legacy `.att` only when it finds no bundle referrer)
            e.push_artifact(repo, instance.bundle(e.subject(repo, digest)) if form == "bundle"
                            else instance.legacy(digest))
            body = slsa_statement(digest)
            artifact = (instance.bundle(e.subject(repo, digest), body=body) if form == "bundle"
                        else legacy_attestation(instance, digest, body))
            e.push_artifact(repo, artifact)
            e.run(tool("cosign"), "verify-attestation", "--trusted-root", str(root), "--type", "slsaprovenance1",
                  "--certificate-identity-regexp", RELEASE_REGEXP, "--certificate-oidc-issuer", GITHUB,
                  *COSIGN_FLAGS, f"{addr}/{repo}@{digest}", env={"DOCKER_CONFIG": str(e.home / "reader")})
            e.pull(repo)
        refused = {
            "keyless/intern": (instance.issue("https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/x"),
                               "identity not trusted"),
            "keyless/foreign": (instance.issue(ca=other_ca()), "certificate chain not trusted"),
            "keyless/nosct": (instance.issue(sct=False), "no valid SCT"),
        }
        for repo, (signing, reason) in refused.items():
            digest = e.push(repo)
            e.push_artifact(repo, instance.bundle(e.subject(repo, digest), signing))
            assert cosign_verify_keyless(e, root, f"{addr}/{repo}@{digest}", check=False).returncode != 0
            assert reason in e.refused(repo, COSIGN_REFUSAL)
    finally:
        e.server.stop()


def test_private_deployment_without_rekor_or_ct_checked_by_real_cosign(test_image: Path, tmp_path: Path) -> None:
    """`require_tlog: false` (no Rekor: the time from the instance's TSA) and `require_sct: false` (no CT):
    the real `cosign verify --insecure-ignore-tlog --use-signed-timestamps` / `--insecure-ignore-sct`
    accepts the bundle and the legacy `.sig` first, then trustreg serves them; what cosign refuses (no
    timestamp, an unknown TSA), trustreg refuses too."""
    instance = SigstoreInstance()
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(instance.trusted_root(tlogs=False, ctlogs=False)))
    identities = [{"issuer": GITHUB, "subject_regexp": RELEASE_REGEXP}]
    extra = {"trust_roots": {"private": {"type": "sigstore", "trusted_root": str(root), "require_tlog": False,
                                         "require_sct": False}},
             "projects": {"private": {"content_trust": {"enforce": True, "require_any": [
                 {"cosign": {"trust_root": "private", "identities": identities}}]}}}}
    e = make_env(test_image, tmp_path, extra=extra)
    relaxed = ("--insecure-ignore-tlog", "--use-signed-timestamps", "--insecure-ignore-sct")
    try:
        addr = e.server.addr
        digest = e.push("private/tsa")
        e.push_artifact("private/tsa", instance.bundle(e.subject("private/tsa", digest), instance.issue(sct=False),
                                                       tlog=False, timestamp_by=instance))
        cosign_verify_keyless(e, root, f"{addr}/private/tsa:v1", *relaxed)  # the oracle first
        e.pull("private/tsa")
        # the legacy `.sig` form: cosign's RFC 3161 timestamp annotation instead of a Rekor bundle
        digest = e.push("private/legacy")
        e.push_artifact("private/legacy", instance.legacy(digest, instance.issue(sct=False), tlog=False,
                                                          timestamp_by=instance))
        cosign_verify_keyless(e, root, f"{addr}/private/legacy:v1", *relaxed)
        e.pull("private/legacy")
        refused = {"private/notime": (None, "bundle"), "private/othertsa": (SigstoreInstance(), "bundle"),
                   "private/legacyothertsa": (SigstoreInstance(), "legacy")}
        for repo, (tsa, form) in refused.items():
            digest = e.push(repo)
            signing = instance.issue(sct=False)
            e.push_artifact(repo, instance.bundle(e.subject(repo, digest), signing, tlog=False, timestamp_by=tsa)
                            if form == "bundle" else instance.legacy(digest, signing, tlog=False, timestamp_by=tsa))
            assert cosign_verify_keyless(e, root, f"{addr}/{repo}@{digest}", *relaxed, check=False).returncode != 0
            assert "no trusted signing time" in e.refused(repo, COSIGN_REFUSAL)
    finally:
        e.server.stop()


SLSA_PREDICATE = {"buildDefinition": {"buildType": "https://acme.test/build/v1", "externalParameters": {}},
                  "runDetails": {"builder": {"id": "https://github.com/acme/builder@v1"}}}
PROVENANCE_POLICY = 'predicate.runDetails.builder.id == "https://github.com/acme/builder@v1"'


def cosign_attest(e: Env, key: str, ref: str, predicate: dict[str, Any], *extra: str) -> None:
    """The real `cosign attest --key` with an SLSA v1 predicate, offline (no transparency log)."""
    path = e.home / f"predicate-{abs(hash(json.dumps(predicate)))}.json"
    path.write_text(json.dumps(predicate))
    e.run(tool("cosign"), "attest", "--key", str(e.keys / f"{key}.key"), "--type", "slsaprovenance1",
          "--predicate", str(path), "--use-signing-config=false", "--tlog-upload=false", *COSIGN_FLAGS, "-y",
          *extra, ref, env={"COSIGN_PASSWORD": "e2e"})


def test_real_cosign_attestations_under_a_cel_policy(test_image: Path, tmp_path: Path) -> None:
    """`cosign sign` + `cosign attest` (legacy `.att` and bundle formats) with the trusted key: served; a
    provenance from another builder: refused by the CEL policy; no provenance: refused."""
    extra = {"projects": {"attested": {"content_trust": {
        "enforce": True, "require_any": [{"cosign": {"trust_root": "ci"}}],
        "attestations": [{"name": "provenance", "predicate_type": "https://slsa.dev/provenance/v1",
                          "signed_by": [{"cosign": {"trust_root": "ci"}}], "policy": PROVENANCE_POLICY}]}}}}
    e = make_env(test_image, tmp_path, extra=extra)
    try:
        addr = e.server.addr
        images = {repo: e.push(f"attested/{repo}") for repo in ("legacy", "bundle", "otherbuilder", "none")}
        for repo, digest in images.items():
            ref = f"{addr}/attested/{repo}@{digest}"
            cosign_sign(e, "ci", ref, "--new-bundle-format=false")
            if repo == "legacy":
                cosign_attest(e, "ci", ref, SLSA_PREDICATE, "--new-bundle-format=false")
            elif repo == "bundle":
                cosign_attest(e, "ci", ref, SLSA_PREDICATE)
            elif repo == "otherbuilder":
                cosign_attest(e, "ci", ref, {**SLSA_PREDICATE, "runDetails": {"builder": {"id": "https://evil.test"}}},
                              "--new-bundle-format=false")
        assert e.http("GET", f"/v2/attested/legacy/manifests/{images['legacy'].replace(':', '-')}.att")
        referrers = json.loads(e.http("GET", f"/v2/attested/bundle/referrers/{images['bundle']}"))["manifests"]
        assert [r.get("artifactType", "").startswith("application/vnd.dev.sigstore.bundle") for r in referrers] == [
            True], referrers
        for repo in ("legacy", "bundle"):
            e.pull(f"attested/{repo}")
        refusal = "The image does not carry the attestations the policy requires."
        assert f"provenance policy false: {PROVENANCE_POLICY}" in e.refused("attested/otherbuilder", refusal)
        assert "no provenance attestation" in e.refused("attested/none", refusal)
    finally:
        e.server.stop()


def test_cri_pulls_keyless_signed_multiarch_image(test_image: Path, tmp_path: Path,
                                                 containerd: Containerd) -> None:  # noqa: F811
    """The index alone is signed keyless (a bundle of the private Sigstore instance, checked by the real
    cosign first); the kubelet's PullImage of the tag succeeds, of an unsigned multi-arch image fails."""
    instance = SigstoreInstance()
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(instance.trusted_root()))
    extra = {"trust_roots": {"private-sigstore": {"type": "sigstore", "trusted_root": str(root)}},
             "projects": {"keyless": {"public": True, "content_trust": {"enforce": True, "require_any": [
                 {"cosign": {"trust_root": "private-sigstore",
                             "identities": [{"issuer": GITHUB, "subject_regexp": RELEASE_REGEXP}]}}]}}}}
    e = make_env(test_image, tmp_path, extra=extra)
    try:
        addr = e.server.addr
        plain_http(containerd, addr)
        index = push_multi(e, "keyless/multi")
        push_multi(e, "keyless/multiunsigned")
        e.push_artifact("keyless/multi", instance.bundle(e.subject("keyless/multi", index)))
        cosign_verify_keyless(e, root, f"{addr}/keyless/multi@{index}")
        assert containerd.cri_pull(f"{addr}/keyless/multi:v1") == e.digests["AMD64_CONFIG"]
        with pytest.raises(grpc.RpcError) as refused:
            containerd.cri_pull(f"{addr}/keyless/multiunsigned:v1")
        assert "412" in str(refused.value), refused.value
    finally:
        e.server.stop()
