"""Issue 15 §4: TUF thresholds count distinct keys, not key IDs.

One ECDSA key pair can be listed under several key IDs: as a bare `ecdsa` key and as `ecdsa-x509`
certificates of it (each certificate another ID). Signing twice with that one key must not meet a
threshold of 2, for any role, in the verifier (the gate) and in the trust server's own validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.trust.factory import Signer, SyntheticRepo, make_cert
from trust.collection import verify_trust_data
from trust.errors import TrustError
from trust.keys import PublicKey
from trust.server.errors import NotaryError
from trust.server.update import validate_update
from trust.signing import sign_signed
from trust.timeutil import utcnow

GUN = "registry.example.com/secure/app"
NOW = utcnow()


def same_key_as_cert(signer: Signer, cn: str = "same key") -> Signer:
    """The same private key, listed as an X.509 certificate (another key ID)."""
    return Signer(signer.key, PublicKey.from_certificate(make_cert(signer.key, cn, NOW)))


def with_role_keys(signed: dict[str, Any], role: str, signers: list[Signer], threshold: int) -> dict[str, Any]:
    for s in signers:
        signed["keys"][s.keyid] = s.public.to_dict()
    signed["roles"][role] = {"keyids": [s.keyid for s in signers], "threshold": threshold}
    return signed


def targets_collection(second: Callable[[Signer], Signer]) -> tuple[SyntheticRepo, bytes, bytes]:
    """A collection whose targets role lists `repo.targets` and `second(repo.targets)`, threshold 2,
    and whose targets file carries a signature by each key ID."""
    repo = SyntheticRepo(GUN, NOW)
    other = second(repo.targets)
    root = repo.sign_root(with_role_keys(repo.root_signed(), "targets", [repo.targets, other], 2))
    targets = sign_signed(repo.targets_signed({"v1": b"manifest"}), [repo.targets.pair, other.pair])
    return repo, root, targets


@pytest.mark.parametrize("second", [same_key_as_cert, lambda s: same_key_as_cert(same_key_as_cert(s))],
                         ids=["bare+x509", "two-certificates"])
def test_one_key_under_two_ids_does_not_meet_threshold_2(second: Callable[[Signer], Signer]) -> None:
    repo, root, targets = targets_collection(second)
    with pytest.raises(TrustError, match="threshold for targets: 1 of 2"):
        verify_trust_data(repo.collection(targets, root=root), GUN, NOW)
    with pytest.raises(NotaryError) as info:
        validate_update(GUN, {}, {"root": root, "targets": targets}, NOW)
    assert info.value.detail["Name"] == "ErrBadTargets"


def test_two_distinct_keys_meet_threshold_2() -> None:
    repo, root, targets = targets_collection(lambda _: Signer.ecdsa())
    assert verify_trust_data(repo.collection(targets, root=root), GUN, NOW).lookup("v1") is not None
    validate_update(GUN, {}, {"root": root, "targets": targets}, NOW)


def test_root_threshold_counts_distinct_certificates() -> None:
    """Two certificates (CN = GUN) of one root key, root threshold 2: the root does not validate."""
    repo = SyntheticRepo(GUN, NOW)
    first = repo.root[0]
    twin = Signer(first.key, PublicKey.from_certificate(make_cert(first.key, GUN, NOW, days=3000)))
    assert twin.keyid != first.keyid
    repo.root = [first, twin]
    root = repo.sign_root(repo.root_signed(thresholds={"root": 2}))
    targets = sign_signed(repo.targets_signed({"v1": b"manifest"}), [repo.targets.pair])
    with pytest.raises(TrustError, match="1 of 2"):
        verify_trust_data(repo.collection(targets, root=root), GUN, NOW)
    with pytest.raises(NotaryError) as info:
        validate_update(GUN, {}, {"root": root, "targets": targets}, NOW)
    assert info.value.detail["Name"] == "ErrBadRoot"


def test_delegation_threshold_counts_distinct_keys() -> None:
    from tests.trust.factory import Delegation

    repo = SyntheticRepo(GUN, NOW)
    key = Signer.ecdsa()
    twin = same_key_as_cert(key, "releases")
    targets = sign_signed(repo.targets_signed({}, [Delegation("targets/releases", [key, twin], threshold=2)]),
                          [repo.targets.pair])
    releases = sign_signed(repo.targets_signed({"v1": b"manifest"}, version=1), [key.pair, twin.pair])
    data = repo.collection(targets, delegations={"targets/releases": releases})
    with pytest.raises(TrustError, match="threshold for targets/releases: 1 of 2"):
        verify_trust_data(data, GUN, NOW)
