"""Keyless cosign through the gate, against a private Sigstore instance's trusted_root.json: both storage
forms accepted, and every refusal reason (identity, issuer, validity, log entry, inclusion proof, CA, SCT,
digest). The same artifacts are checked by the real `cosign verify` in tests/e2e/test_keyless.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.keyless.conftest import keyless_policy
from tests.keyless.sigstore_instance import GITHUB, RELEASE, SigstoreInstance, other_ca
from tests.signatures.conftest import REPO
from tests.signatures.factory import statement
from trust.policy import Policy, PolicyError
from trust.sources import Subject

GITLAB = "https://gitlab.com"


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_keyless_signature_served(registry_store, make_gate, sigstore, root_file, form) -> None:
    image = await registry_store.image()
    artifact = sigstore.bundle(image.subject) if form == "bundle" else sigstore.legacy(image.digest)
    await registry_store.push(artifact)
    gate = make_gate(keyless_policy(root_file))
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    assert (await gate.decide(REPO, None, image.manifest)).served
    requirement = gate.policy.current.project(REPO).content_trust.require_any[0]
    result = await gate.sources["cosign"].check(Subject(registry_store.store, REPO, "v1", image.manifest), requirement)
    assert result.accepted and result.detail["identities"] == [RELEASE]
    assert gate.cache_hits >= 1  # the second decision reused the verdict


async def refusal(registry_store, make_gate, root_file, artifact_for, identities=None) -> str:
    image = await registry_store.image()
    await registry_store.push(artifact_for(image))
    verdict = await make_gate(keyless_policy(root_file, identities)).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.message == "The image is not signed by cosign."
    return verdict.reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_wrong_identity(registry_store, make_gate, sigstore, root_file, form) -> None:
    signing = sigstore.issue("https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main")
    reason = await refusal(registry_store, make_gate, root_file, lambda i: (
        sigstore.bundle(i.subject, signing) if form == "bundle" else sigstore.legacy(i.digest, signing)))
    assert reason.startswith("identity not trusted: https://github.com/acme/app/.github/workflows/ci.yml"), reason


async def test_email_identity_exact(registry_store, make_gate, sigstore, root_file) -> None:
    image = await registry_store.image()
    await registry_store.push(sigstore.bundle(image.subject, sigstore.issue("release@acme.test", GITLAB)))
    exact = [{"issuer": GITLAB, "subject": "release@acme.test"}]
    assert (await make_gate(keyless_policy(root_file, exact)).decide(REPO, "v1", image.manifest)).served
    other = [{"issuer": GITLAB, "subject": "intern@acme.test"}]
    verdict = await make_gate(keyless_policy(root_file, other)).decide(REPO, "v1", image.manifest)
    assert verdict.reason == f"identity not trusted: release@acme.test (issuer {GITLAB})"


async def test_long_issuer(registry_store, make_gate, sigstore, root_file) -> None:
    """An issuer URL over 127 bytes (DER long-form length in the Fulcio extension) still matches."""
    issuer = "https://oidc.example.test/" + "tenant/" * 30
    image = await registry_store.image()
    await registry_store.push(sigstore.bundle(image.subject, sigstore.issue(RELEASE, issuer)))
    identities = [{"issuer": issuer, "subject": RELEASE}]
    assert (await make_gate(keyless_policy(root_file, identities)).decide(REPO, "v1", image.manifest)).served


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_wrong_issuer(registry_store, make_gate, sigstore, root_file, form) -> None:
    signing = sigstore.issue(RELEASE, "https://accounts.google.com")
    reason = await refusal(registry_store, make_gate, root_file, lambda i: (
        sigstore.bundle(i.subject, signing) if form == "bundle" else sigstore.legacy(i.digest, signing)))
    assert reason == "issuer not trusted: https://accounts.google.com", reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_certificate_used_outside_its_validity(registry_store, make_gate, sigstore, root_file, form) -> None:
    signing = sigstore.issue(when=datetime.now(UTC) - timedelta(hours=2))
    signing.logged = signing.when + timedelta(hours=1)  # logged 50 minutes after the certificate expired
    reason = await refusal(registry_store, make_gate, root_file, lambda i: (
        sigstore.bundle(i.subject, signing) if form == "bundle" else sigstore.legacy(i.digest, signing)))
    assert reason.startswith(("certificate not valid at signing time", "certificate chain not trusted")), reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_log_entry_of_another_artifact(registry_store, make_gate, sigstore, root_file, form) -> None:
    other = "sha256:" + "b" * 64
    reason = await refusal(registry_store, make_gate, root_file, lambda i: (
        sigstore.bundle(i.subject, logged_body=statement(other)) if form == "bundle"
        else sigstore.legacy(i.digest, logged_payload=b"another payload")))
    assert reason.startswith("transparency log entry does not verify"), reason


async def test_tampered_inclusion_proof(registry_store, make_gate, sigstore, root_file) -> None:
    reason = await refusal(registry_store, make_gate, root_file, lambda i: sigstore.bundle(i.subject, tamper="proof"))
    assert reason.startswith("transparency log entry does not verify"), reason


async def test_time_from_a_trusted_tsa(registry_store, make_gate, sigstore, root_file) -> None:
    """A bundle whose log entry has no promise: the signing time comes from the root's TSA (RFC 3161,
    signed by the real `openssl ts`)."""
    image = await registry_store.image()
    await registry_store.push(sigstore.bundle(image.subject, promise=False, timestamp_by=sigstore))
    assert (await make_gate(keyless_policy(root_file)).decide(REPO, "v1", image.manifest)).served


async def test_time_from_an_untrusted_tsa(registry_store, make_gate, sigstore, root_file) -> None:
    reason = await refusal(registry_store, make_gate, root_file, lambda i: sigstore.bundle(
        i.subject, promise=False, timestamp_by=SigstoreInstance()))
    assert reason.startswith("no trusted signing time"), reason


async def test_tampered_signed_entry_timestamp(registry_store, make_gate, sigstore, root_file) -> None:
    reason = await refusal(registry_store, make_gate, root_file, lambda i: sigstore.legacy(i.digest, tamper="set"))
    assert reason.startswith("transparency log entry does not verify"), reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_untrusted_ca(registry_store, make_gate, sigstore, root_file, form) -> None:
    signing = sigstore.issue(ca=other_ca())
    reason = await refusal(registry_store, make_gate, root_file, lambda i: (
        sigstore.bundle(i.subject, signing) if form == "bundle" else sigstore.legacy(i.digest, signing)))
    assert reason.startswith("certificate chain not trusted"), reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_missing_sct(registry_store, make_gate, sigstore, root_file, form) -> None:
    signing = sigstore.issue(sct=False)
    reason = await refusal(registry_store, make_gate, root_file, lambda i: (
        sigstore.bundle(i.subject, signing) if form == "bundle" else sigstore.legacy(i.digest, signing)))
    assert reason.startswith("no valid SCT"), reason


async def test_signature_of_another_digest(registry_store, make_gate, sigstore, root_file) -> None:
    other = "sha256:" + "c" * 64
    reason = await refusal(registry_store, make_gate, root_file,
                           lambda i: sigstore.bundle(i.subject, body=statement(other)))
    assert reason.startswith("signed a different digest"), reason


async def test_key_signature_does_not_satisfy_a_keyless_requirement(registry_store, make_gate, root_file) -> None:
    from tests.signatures.factory import cosign_legacy, ec_key
    reason = await refusal(registry_store, make_gate, root_file, lambda i: cosign_legacy(i.digest, [ec_key()]))
    assert reason.startswith("signed by an untrusted key"), reason


async def test_builtin_root_is_the_public_good_one(registry_store, make_gate, sigstore) -> None:
    """`trusted_root: builtin` loads offline; a private instance's signature does not chain to it."""
    policy = Policy.from_config(keyless_policy("builtin"))
    policy.load_trust_roots()
    fulcio = policy.trust_roots["corp"].sigstore.trusted.get_fulcio_certs()
    assert any("sigstore" in str(c.subject) for c in fulcio)
    image = await registry_store.image()
    await registry_store.push(sigstore.bundle(image.subject))
    verdict = await make_gate(keyless_policy("builtin")).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.reason.startswith("certificate chain not trusted"), verdict.reason


@pytest.mark.parametrize(("root", "identities", "message"), [
    ({}, None, "trusted_root"),
    ({"trusted_root": "x.json", "require_tlog": "no"}, None, "require_tlog"),
    ({"trusted_root": "x.json"}, [{"issuer": GITHUB}], "subject or subject_regexp"),
    ({"trusted_root": "x.json"}, [{"issuer": GITHUB, "subject_regexp": "("}], "subject_regexp"),
])
def test_configuration_errors(root, identities, message) -> None:
    config = keyless_policy("x.json", identities)
    config["trust_roots"]["corp"] = {"type": "sigstore", **root}
    with pytest.raises(PolicyError, match=message):
        Policy.from_config(config)


def test_unreadable_trusted_root(tmp_path: Path) -> None:
    bad = tmp_path / "root.json"
    bad.write_text(json.dumps({"mediaType": "something else"}))
    policy = Policy.from_config(keyless_policy(bad))
    with pytest.raises(PolicyError, match=r"trust_roots\.corp\.trusted_root"):
        policy.load_trust_roots()




def test_api_shows_identities(root_file) -> None:
    from registry.api.inspect import project_json

    policy = Policy.from_config(keyless_policy(root_file))
    shown = json.loads(json.dumps(project_json(policy.project(REPO))))  # JSON-serializable
    assert shown["content_trust"]["require_any"][0]["identities"] == [
        {"issuer": GITHUB, "subject_regexp": keyless_policy(root_file)["projects"]["secure"]["content_trust"][
            "require_any"][0]["cosign"]["identities"][0]["subject_regexp"]}]


async def test_inspection_shows_the_signer_identity(registry_store, make_gate, sigstore, root_file) -> None:
    from registry.api.inspect import Inspector

    image = await registry_store.image()
    await registry_store.push(sigstore.bundle(image.subject))
    gate = make_gate(keyless_policy(root_file))
    report = (await Inspector(registry_store.store, gate, gate.policy).tag(REPO, "v1")).to_json()
    cosign = [s for s in report["signatures"] if s["source"] == "cosign"]
    assert cosign == [{"source": "cosign", "status": "signed", "signer": "trust root corp",
                       "keyids": [RELEASE], "expires": "", "reason": ""}]
    assert report["decision"]["served"]
