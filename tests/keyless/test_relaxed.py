"""`require_tlog: false` / `require_sct: false` on a `sigstore` root: a private deployment without Rekor
(the signing time proven by an RFC 3161 timestamp of the root's TSAs, signed by the real `openssl ts`)
and/or without CT logs. What is absent is tolerated, never what is present and wrong; every refusal
reason is here. The same bundles go through the real `cosign verify --insecure-ignore-tlog/-sct` in
tests/e2e/test_keyless.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.keyless.conftest import keyless_policy
from tests.keyless.sigstore_instance import SigstoreInstance
from tests.signatures.conftest import REPO


def root_at(tmp_path: Path, instance: SigstoreInstance, **parts: bool) -> Path:
    path = tmp_path / f"root-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(instance.trusted_root(**parts)))
    return path


async def verdict(registry_store, make_gate, root: Path, artifact_for, **options: bool):  # type: ignore[no-untyped-def]
    image = await registry_store.image()
    await registry_store.push(artifact_for(image))
    return await make_gate(keyless_policy(root, **options)).decide(REPO, "v1", image.manifest)


def signed(sigstore: SigstoreInstance, form: str, signing=None, **options):  # type: ignore[no-untyped-def]
    """The artifact maker of `form` (bundle referrer or legacy `.sig`) with `options`."""
    return lambda i: (sigstore.bundle(i.subject, signing, **options) if form == "bundle"
                      else sigstore.legacy(i.digest, signing, **options))


@pytest.mark.parametrize("form", ["bundle", "legacy"])
@pytest.mark.parametrize("tlogs", [False, True], ids=["root-without-rekor", "root-with-rekor"])
async def test_no_log_entry_time_from_the_tsa(registry_store, make_gate, sigstore, tmp_path, tlogs, form) -> None:
    root = root_at(tmp_path, sigstore, tlogs=tlogs)
    result = await verdict(registry_store, make_gate, root, signed(sigstore, form, tlog=False, timestamp_by=sigstore),
                           require_tlog=False)
    assert result.served, result.reason


async def test_legacy_attestation_time_from_the_tsa(registry_store, make_gate, sigstore, tmp_path) -> None:
    """A keyless legacy `.att` without Rekor bundle: cosign's timestamp annotation over the envelope."""
    from tests.keyless.sigstore_instance import GITHUB, legacy_attestation
    from tests.keyless.test_attestations import slsa_statement

    root = root_at(tmp_path, sigstore, tlogs=False)
    keyless = {"cosign": {"trust_root": "corp", "identities": [{"issuer": GITHUB, "subject_regexp": ".*"}]}}
    config = keyless_policy(root, require_tlog=False)
    config["projects"]["secure"]["content_trust"]["attestations"] = [
        {"name": "provenance", "predicate_type": "https://slsa.dev/provenance/v1", "signed_by": [keyless],
         "policy": "true"}]
    gate = make_gate(config)
    for timestamp_by, served in ((sigstore, True), (None, False)):
        image = await registry_store.image()
        await registry_store.push(sigstore.bundle(image.subject, tlog=False, timestamp_by=sigstore))
        await registry_store.push(legacy_attestation(sigstore, image.digest, slsa_statement(image.digest),
                                                     tlog=False, timestamp_by=timestamp_by))
        result = await gate.decide(REPO, "v1", image.manifest)
        assert result.served is served, result.reason
        if not served:
            assert "no trusted signing time" in result.reason, result.reason


async def test_no_log_entry_refused_where_the_log_is_required(registry_store, make_gate, sigstore, root_file) -> None:
    result = await verdict(registry_store, make_gate, root_file, lambda i: sigstore.bundle(
        i.subject, tlog=False, timestamp_by=sigstore))  # refused by sigstore-python itself
    assert not result.served and "expected exactly one log entry" in result.reason, result.reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_no_signing_time_at_all(registry_store, make_gate, sigstore, tmp_path, form) -> None:
    root = root_at(tmp_path, sigstore, tlogs=False)
    result = await verdict(registry_store, make_gate, root, signed(sigstore, form, tlog=False), require_tlog=False)
    assert not result.served and result.reason.startswith("no trusted signing time"), result.reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_timestamp_of_an_unknown_tsa(registry_store, make_gate, sigstore, tmp_path, form) -> None:
    root = root_at(tmp_path, sigstore, tlogs=False)
    result = await verdict(registry_store, make_gate, root, signed(sigstore, form, tlog=False,
                                                                   timestamp_by=SigstoreInstance()),
                           require_tlog=False)
    assert not result.served and result.reason.startswith("no trusted signing time"), result.reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_certificate_expired_at_the_timestamp(registry_store, make_gate, sigstore, tmp_path, form) -> None:
    signing = sigstore.issue(when=datetime.now(UTC) - timedelta(hours=2))  # expired 110 minutes ago
    root = root_at(tmp_path, sigstore, tlogs=False)
    result = await verdict(registry_store, make_gate, root, signed(sigstore, form, signing, tlog=False,
                                                                   timestamp_by=sigstore), require_tlog=False)
    assert not result.served and result.reason.startswith("certificate not valid at signing time"), result.reason


@pytest.mark.parametrize("tamper", ["proof", "body"])
@pytest.mark.parametrize("sct", [True, False], ids=["full-verifier", "composed"])
async def test_a_present_log_entry_is_still_verified(registry_store, make_gate, sigstore, root_file, sct,
                                                     tamper) -> None:
    """`require_tlog: false` tolerates an absent entry, never a bad one (the root names the log): a
    tampered inclusion proof, or an entry of another statement; by sigstore-python's full verifier, or
    (a certificate without SCT under `require_sct: false`) by the composed path."""
    from tests.signatures.factory import statement

    options = {"tamper": "proof"} if tamper == "proof" else {"logged_body": statement("sha256:" + "d" * 64)}
    result = await verdict(registry_store, make_gate, root_file, lambda i: sigstore.bundle(
        i.subject, sigstore.issue(sct=sct), timestamp_by=sigstore, **options), require_tlog=False, require_sct=False)
    assert not result.served and result.reason.startswith("transparency log entry does not verify"), result.reason


async def test_tampered_envelope_refused(registry_store, make_gate, sigstore, tmp_path) -> None:
    """The relaxed path still verifies the DSSE signature: a statement swapped after signing is refused."""
    from tests.signatures.factory import BUNDLE, b64, referrer, statement

    root = root_at(tmp_path, sigstore, tlogs=False)

    def swapped(image):  # type: ignore[no-untyped-def]
        doc = json.loads(sigstore.bundle(image.subject, tlog=False, timestamp_by=sigstore).blobs[-1])
        doc["dsseEnvelope"]["payload"] = b64(statement(image.subject["digest"]) + b" ")
        return referrer(BUNDLE, image.subject, json.dumps(doc).encode(), BUNDLE)

    result = await verdict(registry_store, make_gate, root, swapped, require_tlog=False)
    assert not result.served and result.reason.startswith("signature does not verify"), result.reason


@pytest.mark.parametrize("form", ["bundle", "legacy"])
async def test_no_sct_tolerated(registry_store, make_gate, sigstore, tmp_path, form) -> None:
    root = root_at(tmp_path, sigstore, ctlogs=False)
    signing = sigstore.issue(sct=False)
    result = await verdict(registry_store, make_gate, root, lambda i: (
        sigstore.bundle(i.subject, signing) if form == "bundle" else sigstore.legacy(i.digest, signing)),
        require_sct=False)
    assert result.served, result.reason


async def test_missing_sct_refused_when_required(registry_store, make_gate, sigstore, tmp_path) -> None:
    root = root_at(tmp_path, sigstore, tlogs=False)
    result = await verdict(registry_store, make_gate, root, lambda i: sigstore.bundle(
        i.subject, sigstore.issue(sct=False), tlog=False, timestamp_by=sigstore), require_tlog=False)
    assert not result.served and result.reason.startswith("no valid SCT"), result.reason


async def test_an_sct_of_another_log_is_refused(registry_store, make_gate, sigstore, tmp_path) -> None:
    """`require_sct: false` tolerates no SCT, not one the root's CT logs do not verify."""
    stranger = SigstoreInstance(ca_key=sigstore.ca_key, start=sigstore.start)
    stranger.ca = sigstore.ca
    signing = stranger.issue()  # chains to the same CA; its SCT is from a CT log the root does not name
    result = await verdict(registry_store, make_gate, root_at(tmp_path, sigstore), lambda i: sigstore.bundle(
        i.subject, signing), require_sct=False)
    assert not result.served and result.reason.startswith("no valid SCT"), result.reason


async def test_neither_log_nor_sct(registry_store, make_gate, sigstore, tmp_path) -> None:
    root = root_at(tmp_path, sigstore, tlogs=False, ctlogs=False)
    result = await verdict(registry_store, make_gate, root, lambda i: sigstore.bundle(
        i.subject, sigstore.issue(sct=False), tlog=False, timestamp_by=sigstore), require_tlog=False,
        require_sct=False)
    assert result.served, result.reason


@pytest.mark.parametrize(("parts", "option"), [({"tlogs": False}, "require_tlog"), ({"ctlogs": False}, "require_sct")])
def test_requirement_the_root_cannot_meet_is_refused_at_start(sigstore, tmp_path, parts, option) -> None:
    """A root without a log (or CT log) under the default requirement would refuse every signature:
    the policy is refused at load, naming the option that fits such a deployment."""
    from trust.policy import Policy, PolicyError

    policy = Policy.from_config(keyless_policy(root_at(tmp_path, sigstore, **parts)), str(tmp_path))
    with pytest.raises(PolicyError, match=f"set {option}: false"):
        policy.load_trust_roots()
    relaxed = Policy.from_config(keyless_policy(root_at(tmp_path, sigstore, **parts), **{option: False}), str(tmp_path))
    relaxed.load_trust_roots()
