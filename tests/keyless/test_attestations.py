"""Attestations through the gate: cosign `.att` (DSSE) and bundle referrers (key-based and keyless), the
predicate type, the subject binding, `signed_by`, the CEL policy, and every refusal reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.enforcement.test_gate import store, trust_dir  # noqa: F401  (fixtures)
from tests.helpers import OCI_CONFIG, OCI_MANIFEST, descriptor, digest_of
from tests.keyless.conftest import keyless_policy
from tests.keyless.sigstore_instance import GITHUB, legacy_attestation
from tests.signatures.conftest import REPO
from tests.signatures.factory import (
    BUNDLE,
    Artifact,
    b64,
    cosign_legacy,
    cosign_sign,
    ec_key,
    key_hint,
    pae,
    public_pem,
    referrer,
    tag_for,
)
from trust.policy import Policy, PolicyError

SLSA = "https://slsa.dev/provenance/v1"
DSSE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
BUILDER = "https://github.com/acme/builder@v1"
POLICY = f'predicate.runDetails.builder.id == "{BUILDER}"'


def slsa_statement(digest: str, builder: str = BUILDER, predicate_type: str = SLSA) -> bytes:
    alg, hexd = digest.split(":")
    return json.dumps({"_type": "https://in-toto.io/Statement/v1",
                       "subject": [{"name": "registry.example/secure/app", "digest": {alg: hexd}}],
                       "predicateType": predicate_type,
                       "predicate": {"buildDefinition": {"buildType": "https://acme.test/build/v1"},
                                     "runDetails": {"builder": {"id": builder}}}}).encode()


def att(digest: str, key: Any, body: bytes | None = None) -> Artifact:
    """cosign's legacy `.att` manifest: one DSSE envelope layer with the predicateType annotation."""
    body = body if body is not None else slsa_statement(digest)
    envelope = json.dumps({"payloadType": IN_TOTO, "payload": b64(body),
                           "signatures": [{"keyid": "", "sig": b64(cosign_sign(key, pae(IN_TOTO, body)))}]}).encode()
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(envelope)]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(DSSE, envelope, annotations={"predicateType": SLSA})]}
    return Artifact(json.dumps(manifest).encode(), [config, envelope], tag_for(digest, ".att"))


def att_bundle(subject: dict[str, Any], key: Any, body: bytes | None = None) -> Artifact:
    """A key-based sigstore bundle referrer carrying an attestation (cosign 3 `attest`)."""
    body = body if body is not None else slsa_statement(subject["digest"])
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": {"publicKey": {"hint": key_hint(key)}},
                         "dsseEnvelope": {"payload": b64(body), "payloadType": IN_TOTO,
                                          "signatures": [{"sig": b64(cosign_sign(key, pae(IN_TOTO, body)))}]}})
    return referrer(BUNDLE, subject, bundle.encode(), BUNDLE, {"dev.sigstore.bundle.content": "dsse-envelope",
                                                              "dev.sigstore.bundle.predicateType": SLSA})


def attested_policy(ci_pem: str, policy: str = POLICY, signed_by: list[dict[str, Any]] | None = None,
                    extra_roots: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"trust_roots": {"ci": {"type": "cosign-key", "public_keys": [ci_pem]}, **(extra_roots or {})},
            "projects": {"secure": {"content_trust": {
                "enforce": True, "require_any": [{"cosign": {"trust_root": "ci"}}],
                "attestations": [{"name": "provenance", "predicate_type": SLSA,
                                  "signed_by": signed_by or [{"cosign": {"trust_root": "ci"}}], "policy": policy}]}}}}


async def signed_image(registry_store, key, tag: str = "v1"):
    image = await registry_store.image(tag)
    await registry_store.push(cosign_legacy(image.digest, [key]))
    return image


@pytest.mark.parametrize("form", ["att", "bundle"])
async def test_signed_and_attested_image_served(registry_store, make_gate, form) -> None:
    key = ec_key()
    image = await signed_image(registry_store, key)
    gate = make_gate(attested_policy(public_pem(key)))
    refused = await gate.decide(REPO, "v1", image.manifest)  # signed, not yet attested
    assert not refused.served and refused.code == "no provenance attestation", refused.reason
    assert refused.message == "The image does not carry the attestations the policy requires."
    await registry_store.push(att(image.digest, key) if form == "att" else att_bundle(image.subject, key))
    assert (await gate.decide(REPO, "v1", image.manifest)).served  # the new attestation is seen at once
    hits = gate.cache_hits
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    assert gate.cache_hits == hits + 2  # the signature and the attestation verdicts both cached


async def test_attestation_alone_is_not_a_signature(registry_store, make_gate) -> None:
    key = ec_key()
    image = await registry_store.image()
    await registry_store.push(att(image.digest, key))
    verdict = await make_gate(attested_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "no signature found", verdict.reason


async def refusal(registry_store, make_gate, artifact_for, **policy: Any) -> str:
    key = ec_key()
    image = await signed_image(registry_store, key)
    await registry_store.push(artifact_for(image, key))
    verdict = await make_gate(attested_policy(public_pem(key), **policy)).decide(REPO, "v1", image.manifest)
    assert not verdict.served
    return verdict.reason


async def test_wrong_predicate_type(registry_store, make_gate) -> None:
    reason = await refusal(registry_store, make_gate, lambda i, k: att(
        i.digest, k, slsa_statement(i.digest, predicate_type="https://slsa.dev/provenance/v0.2")))
    assert reason.startswith("no provenance attestation"), reason


async def test_policy_false(registry_store, make_gate) -> None:
    reason = await refusal(registry_store, make_gate,
                           lambda i, k: att(i.digest, k, slsa_statement(i.digest, "https://evil.test/builder")))
    assert reason == f"provenance policy false: {POLICY}"


async def test_policy_over_statement(registry_store, make_gate) -> None:
    expression = 'statement.subject.exists(s, s.name.startsWith("registry.example/"))'
    key = ec_key()
    image = await signed_image(registry_store, key)
    await registry_store.push(att(image.digest, key))
    assert (await make_gate(attested_policy(public_pem(key), expression)).decide(REPO, "v1", image.manifest)).served


async def test_attestation_for_another_digest(registry_store, make_gate) -> None:
    other = "sha256:" + "d" * 64
    reason = await refusal(registry_store, make_gate, lambda i, k: att(i.digest, k, slsa_statement(other)))
    assert reason.startswith("provenance attestation for another digest"), reason


async def test_attestation_signed_by_an_untrusted_key(registry_store, make_gate) -> None:
    reason = await refusal(registry_store, make_gate, lambda i, k: att(i.digest, ec_key()))
    assert reason.startswith("provenance attestation signed by an untrusted key"), reason


async def test_keyless_attestation(registry_store, make_gate, sigstore, root_file) -> None:
    key = ec_key()
    image = await signed_image(registry_store, key)
    keyless = keyless_policy(root_file)["trust_roots"]
    identities = [{"issuer": GITHUB, "subject_regexp": "^https://github.com/acme/.*$"}]
    config = attested_policy(public_pem(key), signed_by=[{"cosign": {"trust_root": "corp", "identities": identities}}],
                             extra_roots=keyless)
    gate = make_gate(config)
    await registry_store.push(att(image.digest, key))  # keyed: not what signed_by asks for
    refused = await gate.decide(REPO, "v1", image.manifest)
    assert refused.code == "provenance attestation signed by an untrusted key", refused.reason
    await registry_store.push(sigstore.bundle(image.subject, body=slsa_statement(image.digest)))
    assert (await gate.decide(REPO, "v1", image.manifest)).served


async def test_keyless_legacy_att(registry_store, make_gate, sigstore, root_file) -> None:
    """cosign 2's keyless `.att`: certificate and a Rekor `intoto` entry in the layer's annotations."""
    key = ec_key()
    image = await signed_image(registry_store, key)
    identities = [{"issuer": GITHUB, "subject_regexp": "^https://github.com/acme/.*$"}]
    config = attested_policy(public_pem(key), signed_by=[{"cosign": {"trust_root": "corp", "identities": identities}}],
                             extra_roots=keyless_policy(root_file)["trust_roots"])
    other = sigstore.issue("https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main")
    await registry_store.push(legacy_attestation(sigstore, image.digest, slsa_statement(image.digest), other))
    refused = await make_gate(config).decide(REPO, "v1", image.manifest)
    assert refused.code == "provenance attestation signed by an untrusted key", refused.reason
    assert "identity not trusted: https://github.com/evil/app" in refused.reason
    await registry_store.push(legacy_attestation(sigstore, image.digest, slsa_statement(image.digest)))
    assert (await make_gate(config).decide(REPO, "v1", image.manifest)).served


async def test_keyless_legacy_att_log_entry_of_another_attestation(registry_store, make_gate, sigstore,
                                                                   root_file) -> None:
    key = ec_key()
    image = await signed_image(registry_store, key)
    identities = [{"issuer": GITHUB, "subject_regexp": ".*"}]
    config = attested_policy(public_pem(key), signed_by=[{"cosign": {"trust_root": "corp", "identities": identities}}],
                             extra_roots=keyless_policy(root_file)["trust_roots"])
    genuine = json.loads(legacy_attestation(sigstore, image.digest, slsa_statement(image.digest)).manifest)
    forged = legacy_attestation(sigstore, image.digest, slsa_statement(image.digest, "https://evil.test"))
    doc = json.loads(forged.manifest)  # the evil statement, with the genuine attestation's log entry
    doc["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] = genuine["layers"][0]["annotations"][
        "dev.sigstore.cosign/bundle"]
    doc["layers"][0]["annotations"]["dev.sigstore.cosign/certificate"] = genuine["layers"][0]["annotations"][
        "dev.sigstore.cosign/certificate"]
    await registry_store.push(Artifact(json.dumps(doc).encode(), forged.blobs, forged.tag))
    refused = await make_gate(config).decide(REPO, "v1", image.manifest)
    assert "transparency log entry does not verify" in refused.reason, refused.reason


async def test_attested_index_covers_its_platforms(registry_store, make_gate) -> None:
    from tests.signatures.test_multiarch import push_index

    key = ec_key()
    amd64 = await registry_store.image("amd64")
    index = await push_index(registry_store, [amd64])
    await registry_store.push(cosign_legacy(index.digest, [key]))
    gate = make_gate(attested_policy(public_pem(key)))
    assert not (await gate.decide(REPO, None, amd64.manifest)).served
    await registry_store.push(att(index.digest, key))
    assert (await gate.decide(REPO, None, amd64.manifest)).served


@pytest.mark.parametrize(("change", "message"), [
    ({"policy": "predicate.("}, "not a CEL expression"),
    ({"signed_by": [{"notation": {"trust_root": "ci"}}]}, "signed_by"),
    ({"signed_by": []}, "signed_by"),
])
def test_configuration_errors(change, message) -> None:
    config = attested_policy(public_pem(ec_key()))
    config["projects"]["secure"]["content_trust"]["attestations"][0].update(change)
    with pytest.raises(PolicyError, match=message):
        Policy.from_config(config)


README_CONFIG = """
trust_roots:
  public-good: {type: sigstore, trusted_root: builtin}
  corp:        {type: sigstore, trusted_root: corp.json}
  ci-cosign:   {type: cosign-key, public_keys: [ci.pub]}
projects:
  secure:
    content_trust:
      enforce: true
      require_any:
        - cosign:
            trust_root: public-good
            identities:
              - issuer: https://token.actions.githubusercontent.com
                subject_regexp: ^https://github\\\\.com/acme/app/\\\\.github/workflows/release\\\\.yml@refs/tags/v.*$
      attestations:
        - name: provenance
          predicate_type: https://slsa.dev/provenance/v1
          signed_by:
            - cosign: {trust_root: ci-cosign}
            - cosign: {trust_root: corp, identities: [{issuer_regexp: .*, subject: ci@acme.test}]}
          policy: 'predicate.runDetails.builder.id == "https://github.com/acme/builder@v1"'
"""


def test_readme_configuration_loads(tmp_path, sigstore) -> None:
    from config.loader import load_settings

    (tmp_path / "corp.json").write_text(json.dumps(sigstore.trusted_root()))
    (tmp_path / "ci.pub").write_text(public_pem(ec_key()))
    (tmp_path / "registry.yaml").write_text(README_CONFIG)
    settings = load_settings(str(tmp_path / "registry.yaml"), environ={})
    policy = Policy.from_config(settings.raw, str(tmp_path))
    policy.load_trust_roots()
    ct = policy.project("secure/app").content_trust
    assert ct.require_any[0].identities[0].issuer == GITHUB
    assert [r.trust_root.name for r in ct.attestations[0].signed_by] == ["ci-cosign", "corp"]


@pytest.mark.parametrize(("root", "message"), [
    ({"type": "sigstore"}, "trusted_root"),
    ({"type": "sigstore", "trusted_root": "x.json", "public_keys": ["k"]}, "trust_roots.corp"),
    ({"type": "cosign-key", "public_keys": ["k"], "trusted_root": "x.json"}, "trust_roots.corp"),
    ({"type": "x509-ca", "certificates": ["c"], "require_sct": False}, "trust_roots.corp"),
])
def test_schema_refuses_mixed_trust_roots(root, message) -> None:
    from config.loader import ConfigError, parse_settings

    with pytest.raises(ConfigError, match=message):
        parse_settings({"trust_roots": {"corp": root}})


async def test_inspection_shows_attestations_and_their_verdicts(registry_store, make_gate) -> None:
    """`trustreg trust inspect` / `/api/v1` / the UI: the policy's attestations, and per tag one verdict
    per requirement (signature and attestation) besides the gate's decision."""
    from registry.api.inspect import Inspector, project_json

    key = ec_key()
    image = await signed_image(registry_store, key)
    gate = make_gate(attested_policy(public_pem(key)))
    inspector = Inspector(registry_store.store, gate, gate.policy)
    shown = project_json(gate.policy.current.project(REPO))["content_trust"]["attestations"]
    assert shown == [{"name": "provenance", "predicate_type": SLSA, "policy": POLICY,
                      "signed_by": [{"source": "cosign", "trust_root": "ci", "identities": [], "min_signatures": 1}]}]
    report = (await inspector.tag(REPO, "v1")).to_json()
    by_source = {s["source"]: s for s in report["signatures"]}
    assert by_source["cosign"]["status"] == "signed"
    assert by_source["attestation"]["status"] == "invalid"
    assert by_source["attestation"]["reason"].startswith("no provenance attestation")
    assert not report["decision"]["served"]
    await registry_store.push(att(image.digest, key))
    report = (await inspector.tag(REPO, "v1")).to_json()
    attestation = next(s for s in report["signatures"] if s["source"] == "attestation")
    assert attestation["status"] == "signed" and attestation["keyids"] == [key_hint(key)]
    assert report["decision"]["served"]


@pytest.mark.parametrize("form", ["att", "bundle"])
async def test_hostile_attestations_are_refusals(registry_store, make_gate, form) -> None:
    """Deeply nested or mistyped statements are refusals (412), never server errors."""
    key = ec_key()
    image = await signed_image(registry_store, key)
    deep = b'{"predicateType": "' + SLSA.encode() + b'", "predicate": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for body in (deep, b'{"predicateType": "' + SLSA.encode() + b'", "subject": 5, "_type": []}', b"[]"):
        await registry_store.push(att(image.digest, key, body) if form == "att"
                                  else att_bundle(image.subject, key, body))
    verdict = await make_gate(attested_policy(public_pem(key))).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code.startswith(("no provenance attestation", "provenance")), verdict.reason


async def test_notary_acceptance_with_attestations_is_not_remembered_past_them(store, trust_dir) -> None:  # noqa: F811
    """A Notary-signed image under an attestation policy: a removed attestation is seen at once (the
    remembered Notary acceptance, which skips every check, is not used when attestations are required)."""
    from storage.references import Digest
    from tests.enforcement.test_gate import ENFORCED, REPO, manifest, once, remembering_gate

    key = ec_key()
    config = {**ENFORCED, "trust_roots": {"ci": {"type": "cosign-key", "public_keys": [public_pem(key)]}}}
    config["projects"] = {"library": {"content_trust": {"enforce": True, "attestations": [
        {"name": "provenance", "predicate_type": SLSA, "signed_by": [{"cosign": {"trust_root": "ci"}}]}]}}}
    gate, _ = remembering_gate(store, trust_dir, config)
    latest = await manifest(store, "latest")
    attestation = att(str(latest.digest), key)
    for blob in attestation.blobs:
        await store.put_blob(REPO, once(blob), Digest.of(blob))
    digest = Digest.of(attestation.manifest)
    await store.put_manifest(REPO, attestation.manifest, OCI_MANIFEST, digest, [attestation.tag], None, None)
    assert (await gate.decide(REPO, "latest", latest)).served
    assert (await gate.decide(REPO, "latest", latest)).served
    await store.delete_manifest(REPO, digest)
    refused = await gate.decide(REPO, "latest", latest)
    assert not refused.served and refused.code == "no provenance attestation", refused.reason
