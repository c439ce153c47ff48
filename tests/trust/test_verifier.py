"""The verifier over the real vectors, and every tampering it must refuse."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.trust.factory import (
    EXPECTED,
    GUN,
    NOW,
    TESTDATA,
    Delegation,
    Signer,
    SyntheticRepo,
    cert_keyid_of,
    current,
    expires,
    history,
    resign,
    stored_current,
    throwaway_key,
    with_signatures,
)
from trust.collection import StoredTrustData, verify_trust_data
from trust.errors import (
    BadRoot,
    BadSignature,
    Expired,
    HashMismatch,
    NotDelegated,
    NoTrustData,
    Rollback,
    ThresholdNotMet,
    TrustError,
)
from trust.metadata import parse_metadata
from trust.signing import sign_signed
from trust.timeutil import parse_rfc3339
from trust.trusted_set import TrustedMetadataSet
from trust.verify import verify_threshold

DOCKER_GUN: str = EXPECTED["docker"]["gun"]


def root_key_by_version(version: int) -> tuple[str, Any]:
    """(cert key ID, private key) of the root key that root `version` lists (root_chain)."""
    cert_id = next(r for r in EXPECTED["root_chain"] if r["version"] == version)["root_keyids"][0]
    bare = EXPECTED["x509_keys"][cert_id]["public_key_id"]
    return cert_id, throwaway_key(bare)


# --- the real collections verify --------------------------------------------------------------


def test_real_collection_verifies() -> None:
    result = verify_trust_data(stored_current(), GUN, NOW)
    expected = {role: names for role, names in EXPECTED["targets"].items()}
    assert {name: t.role for name, t in result.targets.items()} == {
        name: role for role, names in expected.items() for name in names
    }
    for role, names in expected.items():
        for name, facts in names.items():
            target = result.lookup(name)
            assert target == (facts["sha256"], facts["length"], role)
            assert name in result.names_for_digest(f"sha256:{facts['sha256']}")
    assert result.versions == {role: facts["version"] for role, facts in EXPECTED["current"].items()}
    assert result.root_keyids == tuple(EXPECTED["root_roles"]["root"]["keyids"])
    assert result.expires == parse_rfc3339(EXPECTED["current"]["timestamp"]["expires"])
    assert result.excluded == {}


def test_docker_collection_verifies() -> None:
    result = verify_trust_data(stored_current("docker/current"), DOCKER_GUN, NOW)
    docker = json.loads((TESTDATA / "docker" / "docker-trust-inspect.json").read_text())
    signed_tags = {t["SignedTag"]: t["Digest"] for t in docker[0]["SignedTags"]}
    assert {name: t.sha256 for name, t in result.targets.items()} == signed_tags
    assert result.lookup("v2").role == "targets/releases"  # preferred over targets
    assert result.lookup("v1").role == "targets"
    assert set(result.names_for_digest(f"sha256:{signed_tags['v1']}")) == {"v1", "v2"}


def test_trusted_roles_order_and_selection() -> None:
    only_targets = verify_trust_data(stored_current(), GUN, NOW, trusted_roles=["targets"])
    assert set(only_targets.targets) == set(EXPECTED["targets"]["targets"])
    unknown = verify_trust_data(stored_current(), GUN, NOW, trusted_roles=["targets/nobody"])
    assert unknown.targets == {}


def test_root_chain_1_to_4_verifies() -> None:
    trusted = TrustedMetadataSet(history("root", 1), GUN, NOW)
    for version in (2, 3, 4):
        md = trusted.update_root(history("root", version))
        chain = next(r for r in EXPECTED["root_chain"] if r["version"] == version)
        assert md.signed.roles["root"].keyids == tuple(chain["root_keyids"])
        assert sorted(s.keyid for s in md.signatures) == sorted(chain["signed_by"])
    assert trusted.root.version == 4
    data = dataclasses.replace(stored_current(), root_history=[history("root", v) for v in (1, 2, 3)])
    assert verify_trust_data(data, GUN, NOW).versions["root"] == 4


def test_root_chain_cannot_skip_a_version() -> None:
    trusted = TrustedMetadataSet(history("root", 2), GUN, NOW)
    with pytest.raises(BadRoot, match="could not rotate trust to root version 4"):
        trusted.update_root(history("root", 4))


def test_root_cannot_go_back() -> None:
    trusted = TrustedMetadataSet(history("root", 3), GUN, NOW)
    with pytest.raises((Rollback, BadRoot)):
        trusted.update_root(history("root", 2))


def test_pinned_root_keys() -> None:
    cert_id = EXPECTED["root_roles"]["root"]["keyids"][0]
    bare_id = EXPECTED["x509_keys"][cert_id]["public_key_id"]
    for pin in (cert_id, bare_id):
        assert verify_trust_data(stored_current(), GUN, NOW, pinned_root_keys=[pin]).targets
    with pytest.raises(BadRoot, match="not signed by a pinned root key"):
        verify_trust_data(stored_current(), GUN, NOW, pinned_root_keys=["00" * 32])


def test_no_root_is_no_trust_data() -> None:
    with pytest.raises(NoTrustData, match="no trust data"):
        verify_trust_data(StoredTrustData(None, None, None, None), GUN, NOW)


# --- tampering with the real collection -------------------------------------------------------


def test_altered_target_is_refused() -> None:
    """Changing a target breaks the targets signature and the snapshot hash."""
    doc = json.loads(current("targets"))
    doc["signed"]["targets"]["latest"]["length"] += 1
    altered = json.dumps(doc, separators=(",", ":")).encode()
    md = parse_metadata(altered, "targets")
    root = parse_metadata(current("root"), "root").signed
    with pytest.raises(ThresholdNotMet, match="threshold for targets"):
        verify_threshold(md, root.keys, root.roles["targets"], "targets")
    data = dataclasses.replace(stored_current(), targets=altered)
    with pytest.raises(HashMismatch, match="snapshot version 8 sha(256|512) hash for targets does not match"):
        verify_trust_data(data, GUN, NOW)


def test_altered_target_resigned_with_the_right_key_still_breaks_the_snapshot() -> None:
    targets_id = EXPECTED["root_roles"]["targets"]["keyids"][0]

    def evil(signed: dict[str, Any]) -> None:
        signed["targets"]["latest"]["hashes"]["sha256"] = signed["targets"]["v1"]["hashes"]["sha256"]

    forged = resign(current("targets"), evil, [(targets_id, throwaway_key(targets_id))])
    with pytest.raises(HashMismatch):
        verify_trust_data(dataclasses.replace(stored_current(), targets=forged), GUN, NOW)


def test_stripped_signature_is_refused() -> None:
    stripped = with_signatures(current("timestamp"), lambda sigs: [])
    with pytest.raises(ThresholdNotMet, match="threshold for timestamp: 0 of 1"):
        verify_trust_data(dataclasses.replace(stored_current(), timestamp=stripped), GUN, NOW)
    root_stripped = with_signatures(current("root"), lambda sigs: [])
    with pytest.raises(BadRoot):
        verify_trust_data(dataclasses.replace(stored_current(), root=root_stripped), GUN, NOW)


def test_corrupted_signature_is_refused() -> None:
    def flip(sigs: list[dict[str, Any]]) -> None:
        sigs[0]["sig"] = ("A" if sigs[0]["sig"][0] != "A" else "B") + sigs[0]["sig"][1:]

    data = dataclasses.replace(stored_current(), timestamp=with_signatures(current("timestamp"), flip))
    with pytest.raises(ThresholdNotMet):
        verify_trust_data(data, GUN, NOW)


def test_signature_keyid_not_matching_key_is_an_error() -> None:
    """A role whose key map lists a key under an ID that is not that key's ID cannot sign."""
    repo = SyntheticRepo(GUN, NOW)
    root = repo.root_signed()
    ts_id = repo.timestamp.keyid
    other = Signer.ed25519()
    root["keys"][ts_id] = other.public.to_dict()
    root_bytes = repo.sign_root(root)
    targets = sign_signed(repo.targets_signed({"a": b"a"}), [repo.targets.pair])
    data = repo.collection(targets, root=root_bytes)
    data = dataclasses.replace(data, timestamp=sign_signed(json.loads(data.timestamp)["signed"], [(ts_id, other.key)]))
    with pytest.raises(BadSignature, match="not the ID of that key"):
        verify_trust_data(data, GUN, NOW)


def test_duplicate_key_id_counts_once() -> None:
    repo = SyntheticRepo(GUN, NOW)
    root = repo.sign_root(repo.root_signed(thresholds={"targets": 2}))
    targets_signed = repo.targets_signed({"a": b"a"})
    twice = sign_signed(targets_signed, [repo.targets.pair, repo.targets.pair])
    assert len(json.loads(twice)["signatures"]) == 2
    with pytest.raises(ThresholdNotMet, match="threshold for targets: 1 of 2"):
        verify_trust_data(repo.collection(twice, root=root), GUN, NOW)


def test_duplicate_root_signature_counts_once() -> None:
    repo = SyntheticRepo(GUN, NOW, root=[Signer.root_cert(GUN, NOW), Signer.root_cert(GUN, NOW)])
    signed = repo.root_signed(thresholds={"root": 2})
    twice = repo.sign_root(signed, [repo.root[0], repo.root[0]])
    with pytest.raises(BadRoot, match="1 of 2"):
        TrustedMetadataSet(twice, GUN, NOW)
    assert TrustedMetadataSet(repo.sign_root(signed), GUN, NOW).root.version == 1


def test_old_timestamp_replayed_is_rollback() -> None:
    trusted = TrustedMetadataSet(current("root"), GUN, NOW)
    trusted.update_timestamp(current("timestamp"))
    with pytest.raises(Rollback, match="timestamp version 6 is older than the trusted version 7"):
        trusted.update_timestamp(history("timestamp", 6))
    assert trusted.timestamp is not None and trusted.timestamp.version == 7


def test_rollback_floor_from_earlier_verification() -> None:
    seen = verify_trust_data(stored_current(), GUN, NOW).versions
    # the state after step 5: root v3, targets v4, snapshot v7, timestamp v6
    old = dataclasses.replace(
        stored_current(), root=history("root", 3), timestamp=history("timestamp", 6), snapshot=history("snapshot", 7)
    )
    verify_trust_data(old, GUN, NOW)  # self-consistent and validly signed...
    with pytest.raises(Rollback, match="root version 3 is older than version 4 seen before"):
        verify_trust_data(old, GUN, NOW, min_versions=seen)  # ...but older than what was seen
    with pytest.raises(Rollback, match="timestamp version 6 is older than version 7 seen before"):
        verify_trust_data(old, GUN, NOW, min_versions={"timestamp": seen["timestamp"]})


def test_expired_timestamp_is_refused() -> None:
    later = parse_rfc3339(EXPECTED["current"]["timestamp"]["expires"])
    with pytest.raises(Expired, match=f"timestamp expired at {EXPECTED['current']['timestamp']['expires']}"):
        verify_trust_data(stored_current(), GUN, later)
    verify_trust_data(stored_current(), GUN, later - timedelta(seconds=1))


def test_expired_targets_is_refused() -> None:
    repo = SyntheticRepo(GUN, NOW)
    targets = sign_signed(repo.targets_signed({"a": b"a"}, days=-1), [repo.targets.pair])
    with pytest.raises(Expired, match="^targets expired at "):
        verify_trust_data(repo.collection(targets), GUN, NOW)


def test_expired_root_is_refused() -> None:
    repo = SyntheticRepo(GUN, NOW)
    signed = repo.root_signed()
    signed["expires"] = expires(NOW, -1)
    targets = sign_signed(repo.targets_signed({"a": b"a"}), [repo.targets.pair])
    with pytest.raises(Expired, match="^root expired at "):
        verify_trust_data(repo.collection(targets, root=repo.sign_root(signed)), GUN, NOW)


def test_snapshot_of_another_version_is_mix_and_match() -> None:
    data = dataclasses.replace(stored_current(), snapshot=history("snapshot", 7))
    with pytest.raises(HashMismatch, match="timestamp version 7 .*for snapshot does not match"):
        verify_trust_data(data, GUN, NOW)


def test_old_targets_under_new_snapshot_is_mix_and_match() -> None:
    data = dataclasses.replace(stored_current(), targets=history("targets", 3))
    with pytest.raises(HashMismatch, match="for targets does not match"):
        verify_trust_data(data, GUN, NOW)


def test_stale_root_under_snapshot_is_mix_and_match() -> None:
    trusted = TrustedMetadataSet(history("root", 3), GUN, NOW)
    trusted.update_timestamp(current("timestamp"))
    with pytest.raises(HashMismatch, match="for root version 3 does not match"):
        trusted.update_snapshot(current("snapshot"))


def test_delegation_metadata_missing_is_refused() -> None:
    data = dataclasses.replace(stored_current(), delegations={})
    with pytest.raises(NoTrustData, match="targets/releases is listed in the snapshot"):
        verify_trust_data(data, GUN, NOW)


def test_root_signed_only_by_new_key_is_refused() -> None:
    """Root v3 re-signed by its new key B alone (not by v2's key A) cannot follow v2."""
    new_id, new_key = root_key_by_version(3)
    only_new = resign(history("root", 3), lambda s: None, [(new_id, new_key)])
    TrustedMetadataSet(only_new, GUN, NOW)  # valid on its own (self-signed)...
    trusted = TrustedMetadataSet(history("root", 2), GUN, NOW)
    with pytest.raises(BadRoot, match="not signed by a threshold of the root keys of version 2"):
        trusted.update_root(only_new)  # ...but not a rotation v2 trusts


def test_root_signed_only_by_old_key_is_refused() -> None:
    old_id, old_key = root_key_by_version(2)
    only_old = resign(history("root", 3), lambda s: None, [(old_id, old_key)])
    trusted = TrustedMetadataSet(history("root", 2), GUN, NOW)
    with pytest.raises(BadRoot, match="could not validate the integrity of root version 3"):
        trusted.update_root(only_old)


def test_root_cert_cn_must_be_the_gun() -> None:
    with pytest.raises(BadRoot, match="has CN '127.0.0.1:5000/library/alpine', not the GUN"):
        TrustedMetadataSet(current("root"), "127.0.0.1:5000/library/other", NOW)
    repo = SyntheticRepo(GUN, NOW, root=[Signer.root_cert("someone-else", NOW)])
    with pytest.raises(BadRoot, match="unable to retrieve valid leaf certificates"):
        TrustedMetadataSet(repo.sign_root(repo.root_signed()), GUN, NOW)


@pytest.mark.parametrize(
    ("signer_kwargs", "message"),
    [
        ({"days": -2}, "expired at"),
        ({"key": rsa.generate_private_key(65537, 1024)}, "1024-bit RSA key"),
    ],
)
def test_root_cert_rules(signer_kwargs: dict[str, Any], message: str) -> None:
    repo = SyntheticRepo(GUN, NOW, root=[Signer.root_cert(GUN, NOW, **signer_kwargs)])
    with pytest.raises(BadRoot, match=message):
        TrustedMetadataSet(repo.sign_root(repo.root_signed()), GUN, NOW).finalize_root()


def test_root_cert_not_yet_valid_has_one_day_leeway() -> None:
    repo = SyntheticRepo(GUN, NOW)
    TrustedMetadataSet(repo.sign_root(repo.root_signed()), GUN, NOW - timedelta(hours=12)).finalize_root()
    with pytest.raises(BadRoot, match="not valid before"):
        TrustedMetadataSet(repo.sign_root(repo.root_signed()), GUN, NOW - timedelta(days=2)).finalize_root()


def test_expired_certificate_of_an_old_root_does_not_break_the_chain() -> None:
    old, new = Signer.root_cert(GUN, NOW, days=-2), Signer.root_cert(GUN, NOW)
    repo = SyntheticRepo(GUN, NOW, root=[old])
    v1 = repo.sign_root(repo.root_signed())
    repo.root = [new]
    v2 = repo.sign_root(repo.root_signed(version=2), [new, old])
    with pytest.raises(BadRoot, match="expired at"):
        TrustedMetadataSet(v1, GUN, NOW).finalize_root()
    trusted = TrustedMetadataSet(v1, GUN, NOW)
    trusted.update_root(v2)
    trusted.finalize_root()
    assert trusted.root.version == 2


def test_bare_root_key_is_refused() -> None:
    repo = SyntheticRepo(GUN, NOW, root=[Signer.ecdsa()])
    with pytest.raises(BadRoot, match="bare ecdsa key, not an X.509 certificate"):
        TrustedMetadataSet(repo.sign_root(repo.root_signed()), GUN, NOW)


# --- delegations -------------------------------------------------------------------------------


def _delegated(repo: SyntheticRepo, delegate: Signer, paths: list[str], signer: Signer, content: dict[str, bytes]):
    targets = sign_signed(
        repo.targets_signed({"base": b"base"}, [Delegation("targets/releases", [delegate], paths)]),
        [repo.targets.pair],
    )
    releases = sign_signed(repo.targets_signed(content, version=1), [signer.pair])
    return repo.collection(targets, {"targets/releases": releases})


def test_delegation_verifies_and_is_preferred() -> None:
    repo = SyntheticRepo(GUN, NOW)
    alice = Signer.ecdsa()
    result = verify_trust_data(_delegated(repo, alice, [""], alice, {"base": b"other", "v1": b"1"}), GUN, NOW)
    assert result.lookup("base").role == "targets/releases"
    assert result.lookup("v1").role == "targets/releases"


def test_delegation_signed_by_the_wrong_key_is_refused() -> None:
    repo = SyntheticRepo(GUN, NOW)
    alice, mallory = Signer.ecdsa(), Signer.ecdsa()
    with pytest.raises(ThresholdNotMet, match="threshold for targets/releases"):
        verify_trust_data(_delegated(repo, alice, [""], mallory, {"v1": b"1"}), GUN, NOW)


def test_delegation_signed_by_the_parent_key_is_refused() -> None:
    """Real vectors: targets/releases re-signed with the (real) targets key instead of the delegate's."""
    targets_id = EXPECTED["root_roles"]["targets"]["keyids"][0]
    repo = SyntheticRepo(GUN, NOW)
    releases = resign(current("targets/releases"), lambda s: None, [(targets_id, throwaway_key(targets_id))])
    delegate_cert = EXPECTED["delegations"][0]["keyids"][0]
    assert cert_keyid_of(EXPECTED["x509_keys"][delegate_cert]["public_key_id"]) == delegate_cert
    md = parse_metadata(releases, "targets/releases")
    parent = parse_metadata(current("targets"), "targets").signed
    entry = parent.delegation("targets/releases")
    assert entry is not None
    with pytest.raises(ThresholdNotMet):
        verify_threshold(md, parent.delegation_keys, entry.keys, "targets/releases")
    assert repo  # the synthetic variant is covered by test_delegation_signed_by_the_wrong_key_is_refused


def test_delegation_target_outside_its_paths_is_refused() -> None:
    repo = SyntheticRepo(GUN, NOW)
    alice = Signer.ecdsa()
    data = _delegated(repo, alice, ["release-"], alice, {"release-1": b"1", "base": b"evil"})
    result = verify_trust_data(data, GUN, NOW)
    assert result.lookup("release-1").role == "targets/releases"
    assert result.lookup("base").role == "targets"  # the delegate's "base" is not accepted
    assert "outside the paths delegated to targets/releases" in result.excluded["base"]
    trusted = TrustedMetadataSet(data.root, GUN, NOW)
    trusted.update_timestamp(data.timestamp)
    trusted.update_snapshot(data.snapshot)
    trusted.update_targets(data.targets)
    trusted.update_delegated_targets(data.delegations["targets/releases"], "targets/releases")
    with pytest.raises(NotDelegated, match="outside the paths"):
        trusted.require_target("targets/releases", "base")


def test_undelegated_role_is_not_loaded() -> None:
    repo = SyntheticRepo(GUN, NOW)
    alice = Signer.ecdsa()
    targets = sign_signed(repo.targets_signed({"a": b"a"}), [repo.targets.pair])
    releases = sign_signed(repo.targets_signed({"a": b"evil"}, version=1), [alice.pair])
    data = repo.collection(targets, {"targets/releases": releases})
    assert verify_trust_data(data, GUN, NOW).lookup("a").role == "targets"
    trusted = TrustedMetadataSet(data.root, GUN, NOW)
    trusted.update_timestamp(data.timestamp)
    trusted.update_snapshot(data.snapshot)
    trusted.update_targets(data.targets)
    with pytest.raises(NotDelegated, match="not delegated by targets"):
        trusted.update_delegated_targets(releases, "targets/releases")


def test_nested_delegation_paths_are_intersected() -> None:
    repo = SyntheticRepo(GUN, NOW)
    a, b = Signer.ecdsa(), Signer.ecdsa()
    targets = sign_signed(repo.targets_signed({}, [Delegation("targets/a", [a], ["app-"])]), [repo.targets.pair])
    mid = sign_signed(repo.targets_signed({}, [Delegation("targets/a/b", [b], [""])], version=1), [a.pair])
    leaf = sign_signed(repo.targets_signed({"app-1": b"1", "other": b"2"}, version=1), [b.pair])
    data = repo.collection(targets, {"targets/a": mid, "targets/a/b": leaf})
    result = verify_trust_data(data, GUN, NOW, trusted_roles=["targets/a/b"])
    assert set(result.targets) == {"app-1"}
    assert "outside the paths delegated to targets/a" in result.excluded["other"]


def test_trust_errors_share_one_base() -> None:
    for cls in (BadRoot, BadSignature, Expired, HashMismatch, NoTrustData, NotDelegated, Rollback):
        assert issubclass(cls, TrustError)
