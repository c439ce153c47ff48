"""Issue 15 §4: notation's `notary.x509.signingAuthority` scheme is honoured only where notation honours
it: against a trust root declared as a signing authority (`x509-signing-authority`, notation's
`signingAuthority` trust store). A signer cannot pick the back-dated time rule by claiming the scheme."""

from __future__ import annotations

from datetime import timedelta

from tests.signatures.conftest import REPO, make_gate, notation_policy, registry_store  # noqa: F401
from tests.signatures.factory import jws_envelope, make_pki, notation_signature


def authority_policy(*pems: str) -> dict:
    policy = notation_policy(*pems)
    policy["trust_roots"]["pki"]["type"] = "x509-signing-authority"
    return policy


async def _signed_long_ago(registry_store):  # noqa: F811
    """A leaf that expired 30 days ago, signing with a claimed signing time inside its validity."""
    pki = make_pki()
    image = await registry_store.image()
    claimed = pki.leaf.not_valid_after_utc - timedelta(days=1)
    await registry_store.push(notation_signature(pki, image.subject,
                                                 jws_envelope(pki, image.subject, authentic_time=claimed)))
    return pki, image, pki.leaf.not_valid_after_utc + timedelta(days=30)


async def test_back_dated_signing_authority_claim_refused_by_a_ca_root(registry_store, make_gate) -> None:  # noqa: F811
    pki, image, now = await _signed_long_ago(registry_store)
    verdict = await make_gate(notation_policy(pki.root_pem()), now=now).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signing scheme not trusted", verdict.reason


async def test_signing_authority_root_takes_the_authentic_time(registry_store, make_gate) -> None:  # noqa: F811
    pki, image, now = await _signed_long_ago(registry_store)
    verdict = await make_gate(authority_policy(pki.root_pem()), now=now).decide(REPO, "v1", image.manifest)
    assert verdict.served, verdict.reason


async def test_plain_x509_signature_refused_by_a_signing_authority_root(registry_store, make_gate) -> None:  # noqa: F811
    pki = make_pki()
    image = await registry_store.image()
    await registry_store.push(notation_signature(pki, image.subject))
    verdict = await make_gate(authority_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)
    assert not verdict.served and verdict.code == "signing scheme not trusted", verdict.reason
    assert (await make_gate(notation_policy(pki.root_pem())).decide(REPO, "v1", image.manifest)).served
