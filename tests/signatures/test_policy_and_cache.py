"""The policy (`trust_roots`, `require_any`, the Notary-only form), its validation, and the verdict cache."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from config.loader import ConfigError, load_settings, parse_settings
from tests.signatures.conftest import REPO, cosign_policy, notation_policy
from tests.signatures.factory import cosign_bundle, cosign_legacy, ec_key, make_pki, notation_signature, public_pem
from trust.cosign import CosignSource
from trust.policy import (
    DEFAULT_SIGNERS,
    CosignRequirement,
    NotaryRequirement,
    NotationRequirement,
    Policy,
    PolicyError,
    PolicyHolder,
)


def test_notary_only_form_means_require_any_notary() -> None:
    raw = {"projects": {"secure": {"content_trust": {"enforce": True, "signers": ["targets"], "inherit_index": False,
                                                     "root_keys": ["a" * 64]}}}}
    ct = Policy.from_config(raw).project("secure/x").content_trust
    assert ct.require_any == (NotaryRequirement(("targets",), frozenset({"a" * 64}), False),)
    assert Policy.from_config({}).project("x").content_trust.require_any == (NotaryRequirement(DEFAULT_SIGNERS),)


def test_require_any_parsed(tmp_path: Path) -> None:
    key = tmp_path / "ci.pub"
    key.write_text(public_pem(ec_key()))
    ca = tmp_path / "root.pem"
    ca.write_text(make_pki().root_pem())
    raw = {"trust_roots": {"ci": {"type": "cosign-key", "public_keys": ["ci.pub"]},
                           "pki": {"type": "x509-ca", "certificates": ["root.pem"]}},
           "projects": {"secure": {"content_trust": {"enforce": True, "signers": ["targets"], "require_any": [
               {"notary": None}, {"cosign": {"trust_root": "ci", "min_signatures": 2}},
               {"notation": {"trust_root": "pki", "identities": ["x509.subject: C=US, ST=WA, O=Example, CN=r"]}}]}}}}
    parse_settings(raw)  # the schema accepts it
    policy = Policy.from_config(raw, str(tmp_path))
    policy.load_trust_roots()
    notary, cosign, notation = policy.project("secure/app").content_trust.require_any
    assert notary == NotaryRequirement(("targets",))  # the content_trust-level settings are its defaults
    assert isinstance(cosign, CosignRequirement) and cosign.min_signatures == 2 and len(cosign.trust_root.keys) == 1
    assert isinstance(notation, NotationRequirement) and len(notation.trust_root.certificates) == 1


@pytest.mark.parametrize(("raw", "message"), [
    ({"projects": {"p": {"content_trust": {"require_any": [{"cosign": {"trust_root": "nope"}}]}}}},
     "projects.p.content_trust.require_any[0].cosign.trust_root: unknown trust root 'nope'"),
    ({"trust_roots": {"k": {"type": "cosign-key", "public_keys": ["-----BEGIN PUBLIC KEY-----"]}},
      "projects": {"p": {"content_trust": {"require_any": [{"notation": {"trust_root": "k"}}]}}}},
     "require_any[0].notation.trust_root: 'k' is a cosign-key, notation needs x509-ca"),
    ({"trust_roots": {"c": {"type": "x509-ca", "certificates": ["-----BEGIN CERTIFICATE-----"]}},
      "projects": {"p": {"content_trust": {"require_any": [{"notation": {"trust_root": "c",
                                                                         "identities": ["CN=x"]}}]}}}},
     "require_any[0].notation.identities[0]"),
])
def test_policy_errors_name_the_key_path(raw, message) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Policy.from_config(raw)


def test_trust_root_files_validated_relative_to_the_config(tmp_path: Path) -> None:
    """A real config file: relative paths resolve against its directory; a bad key names its path."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ci.pub").write_text(public_pem(ec_key()))
    (tmp_path / "keys" / "bad.pub").write_text("not a key")
    config = tmp_path / "registry.yaml"
    config.write_text(yaml.safe_dump({"trust_roots": {"ci": {"type": "cosign-key", "public_keys": ["keys/ci.pub"]}}}))
    settings = load_settings(str(config))
    assert settings.config_dir == str(tmp_path)
    policy = Policy.from_config(settings.raw, settings.config_dir)
    policy.load_trust_roots()
    assert len(policy.trust_roots["ci"].keys) == 1

    for keys, message in ((["keys/missing.pub"], "trust_roots.ci.public_keys[0]: cannot read .*missing.pub"),
                          (["keys/ci.pub", "keys/bad.pub"], "trust_roots.ci.public_keys[1]: .*bad.pub holds no PEM")):
        config.write_text(yaml.safe_dump({"trust_roots": {"ci": {"type": "cosign-key", "public_keys": keys}}}))
        settings = load_settings(str(config))
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            Policy.from_config(settings.raw, settings.config_dir).load_trust_roots()


def test_registry_refuses_to_start_with_a_bad_trust_root(tmp_path: Path) -> None:
    from registry.app import create_app

    settings = parse_settings({"trust_roots": {"ci": {"type": "cosign-key", "public_keys": [str(tmp_path / "x")]}},
                               "trust": {"keys": {"insecure_dev_passphrase": True}},
                               "storage": {"filesystem": {"root": str(tmp_path / "data")}}})
    with pytest.raises(ConfigError, match=r"trust_roots.ci.public_keys\[0\]: cannot read"):
        create_app(settings)


def test_reload_with_a_bad_policy_keeps_the_old_one(tmp_path: Path) -> None:
    holder = PolicyHolder(Policy.from_config(cosign_policy(public_pem(ec_key()))))
    before = holder.current
    with pytest.raises(ConfigError):
        holder.reload({"trust_roots": {"ci": {"type": "cosign-key", "public_keys": ["missing.pub"]}}}, str(tmp_path))
    assert holder.current is before


async def test_any_listed_source_suffices_and_every_reason_is_reported(registry_store, make_gate) -> None:
    key, pki = ec_key(), make_pki()
    config = cosign_policy(public_pem(key))
    config["trust_roots"]["pki"] = {"type": "x509-ca", "certificates": [pki.root_pem()]}
    config["projects"]["secure"]["content_trust"]["require_any"] = [
        {"notary": {}}, {"cosign": {"trust_root": "ci"}}, {"notation": {"trust_root": "pki"}}]
    gate = make_gate(config)
    unsigned, by_cosign, by_notation = [await registry_store.image(t) for t in ("u", "c", "n")]
    await registry_store.push(cosign_legacy(by_cosign.digest, [key]))
    await registry_store.push(notation_signature(pki, by_notation.subject))
    assert (await gate.decide(REPO, "c", by_cosign.manifest)).served
    assert (await gate.decide(REPO, "n", by_notation.manifest)).served
    verdict = await gate.decide(REPO, "u", unsigned.manifest)
    assert not verdict.served
    assert verdict.message == "The image is not signed in Notary."  # the first listed source's message
    assert [s["source"] for s in verdict.detail["sources"]] == ["notary", "cosign", "notation"]
    assert verdict.detail["sources"][0]["reason"].startswith("no trust data")
    assert verdict.detail["sources"][1]["reason"].startswith("no signature found")
    assert verdict.code == "no trust data"


class CountingCosign(CosignSource):
    def __init__(self, store) -> None:  # noqa: ANN001
        super().__init__(store)
        self.checks = 0

    async def check(self, subject, requirement):  # noqa: ANN001, ANN201
        self.checks += 1
        return await super().check(subject, requirement)


async def test_verdict_cached_until_the_signature_set_changes(registry_store, make_gate) -> None:
    key = ec_key()
    gate = make_gate(cosign_policy(public_pem(key)))
    counting = gate.sources["cosign"] = CountingCosign(registry_store.store)
    image = await registry_store.image()
    for _ in range(3):
        assert not (await gate.decide(REPO, "v1", image.manifest)).served
    assert counting.checks == 1 and gate.cache_hits == 2 and gate.cache_misses == 1
    await registry_store.push(cosign_bundle(image.subject, key))  # seen at once: a new referrer
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    assert counting.checks == 2
    assert (await gate.decide(REPO, None, image.manifest)).served
    assert counting.checks == 2
    await registry_store.push(cosign_legacy(image.digest, [ec_key()]))  # a new .sig tag: new set, verified again
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    assert counting.checks == 3


async def test_policy_reload_invalidates_verdicts(registry_store, make_gate) -> None:
    key = ec_key()
    gate = make_gate(cosign_policy(public_pem(key)))
    image = await registry_store.image()
    await registry_store.push(cosign_legacy(image.digest, [key]))
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    gate.policy.reload(cosign_policy(public_pem(ec_key())))
    verdict = await gate.decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signature does not verify"


async def test_acceptance_ends_when_the_certificate_expires(registry_store, make_gate) -> None:
    pki = make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject))
    clock = [pki.leaf.not_valid_after_utc - timedelta(minutes=2)]  # well within VERDICT_MAX_AGE
    gate = make_gate(notation_policy(pki.root_pem()))
    gate.clock = lambda: clock[0]
    assert (await gate.decide(REPO, "v1", image.manifest)).served
    clock[0] += timedelta(minutes=1)
    assert (await gate.decide(REPO, "v1", image.manifest)).served and gate.cache_hits == 1
    clock[0] += timedelta(minutes=2)
    verdict = await gate.decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "certificate expired"


async def test_push_holder_read_not_gated(registry_store, make_gate) -> None:
    image = await registry_store.image()
    gate = make_gate(cosign_policy(public_pem(ec_key())))
    assert (await gate.decide(REPO, None, image.manifest, push_holder_head=True)).served
    assert not (await gate.decide(REPO, None, image.manifest)).served
