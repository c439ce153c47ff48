"""Canonical JSON, RFC 3339, key IDs, signature methods and schema validation."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.trust.factory import EXPECTED, TESTDATA, current, history, throwaway_key
from trust.canonical import canonical_json
from trust.errors import Malformed
from trust.keys import PublicKey
from trust.metadata import parse_metadata
from trust.signing import public_key_of, sign_bytes
from trust.timeutil import format_rfc3339, parse_rfc3339

ROLE_FILES = {
    "root": "current/root.json",
    "targets": "current/targets.json",
    "snapshot": "current/snapshot.json",
    "timestamp": "current/timestamp.json",
    "targets/releases": "current/targets/releases.json",
}


def test_canonical_json_rules() -> None:
    value = {"b": [1, True, None], "a": 'q"\\<>&\u00e9\n', "\u00e9": {}, "B": False}
    assert canonical_json(value) == '{"B":false,"a":"q\\"\\\\<>&\u00e9\n","b":[1,true,null],"\u00e9":{}}'.encode()
    with pytest.raises(Malformed):
        canonical_json({"x": 1.5})


@pytest.mark.parametrize("role", sorted(ROLE_FILES))
def test_signed_part_of_real_files_is_canonical(role: str) -> None:
    """Notary writes `signed` canonically: re-canonicalising the parsed value gives the same bytes."""
    raw = (TESTDATA / ROLE_FILES[role]).read_bytes()
    md = parse_metadata(raw, role)
    assert md.message in raw
    assert raw.startswith(b'{"signed":' + md.message + b',"signatures":')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2036-11-21T17:19:14.246801935Z", datetime(2036, 11, 21, 17, 19, 14, 246801, tzinfo=UTC)),
        ("2036-11-21T17:19:14Z", datetime(2036, 11, 21, 17, 19, 14, tzinfo=UTC)),
        ("2036-11-21T17:19:14.5Z", datetime(2036, 11, 21, 17, 19, 14, 500000, tzinfo=UTC)),
        ("2036-11-21T19:19:14+02:00", datetime(2036, 11, 21, 17, 19, 14, tzinfo=UTC)),
    ],
)
def test_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["2036-11-21 17:19:14Z", "2036-11-21T17:19:14.1234567890Z", "2036-13-01T00:00:00Z"])
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(Malformed):
        parse_rfc3339(text)


def test_format_rfc3339_round_trips() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)
    assert format_rfc3339(moment) == "2026-01-02T03:04:05.12Z"
    assert parse_rfc3339(format_rfc3339(moment)) == moment


def test_key_ids_match_expected() -> None:
    """Every key in root and delegations has the ID Notary computed (the map key) and expected type."""
    root = parse_metadata(current("root"), "root").signed
    targets = parse_metadata(current("targets"), "targets").signed
    for keyid, key in {**root.keys, **targets.delegation_keys}.items():
        assert key.keyid == keyid
    assert {k: v.keytype for k, v in root.keys.items()} == EXPECTED["key_types"]
    assert {k: v.keytype for k, v in targets.delegation_keys.items()} == EXPECTED["delegation_key_types"]


def test_bare_key_ids_of_certificates_match_notary_key_store() -> None:
    keys = {}
    for version in EXPECTED["history"]["root"]:
        keys.update(parse_metadata(history("root", version), "root").signed.keys)
    keys.update(parse_metadata(current("targets"), "targets").signed.delegation_keys)
    for cert_id, info in EXPECTED["x509_keys"].items():
        key = keys[cert_id]
        assert key.bare_keyid() == info["public_key_id"]
        assert key.certificate().subject.rfc4514_string() == info["subject_cn"]


def test_private_key_files_match_their_ids() -> None:
    for bare_id in EXPECTED["private_keys"]:
        assert public_key_of(throwaway_key(bare_id)).keyid == bare_id


def test_signing_methods_verify() -> None:
    message = b'{"x":1}'
    for private in (throwaway_key(next(iter(EXPECTED["private_keys"]))), rsa.generate_private_key(65537, 2048)):
        for method in ("rsapss", "rsapkcs1v15") if isinstance(private, rsa.RSAPrivateKey) else (None,):
            used, sig = sign_bytes(private, message, method)
            key = public_key_of(private)
            assert key.verify(used, sig, message)
            assert not key.verify(used, sig, message + b" ")
            assert not key.verify("eddsa", sig, message)


def test_ecdsa_signature_must_be_raw_64_bytes() -> None:
    private = throwaway_key(next(iter(EXPECTED["private_keys"])))
    method, sig = sign_bytes(private, b"m")
    assert method == "ecdsa" and len(sig) == 64
    assert not public_key_of(private).verify("ecdsa", sig + b"\0", b"m")


def test_real_signatures_verify_and_match_expected() -> None:
    for role, rel in ROLE_FILES.items():
        md = parse_metadata((TESTDATA / rel).read_bytes(), role)
        exp = EXPECTED["current"][role]
        assert md.version == exp["version"]
        assert md.signed.expires_text == exp["expires"]
        assert hashlib.sha256(md.raw).hexdigest() == exp["sha256"]
        assert [s.keyid for s in md.signatures] == exp["signed_by"]
        assert [s.method for s in md.signatures] == exp["methods"]


@pytest.mark.parametrize(
    ("role", "mutate", "message"),
    [
        ("timestamp", lambda d: d["signed"].pop("meta"), "'meta' is a required property"),
        ("timestamp", lambda d: d["signed"].update(version=1.5), "version"),
        ("timestamp", lambda d: d["signed"].update(expires="tomorrow"), "expires"),
        ("targets", lambda d: d["signed"].update(_type="Snapshot"), "expected type Targets, not Snapshot"),
        ("targets", lambda d: d.pop("signatures"), "'signatures' is a required property"),
        ("root", lambda d: d["signed"]["roles"].pop("timestamp"), "'timestamp' is a required property"),
        ("root", lambda d: d["signed"]["roles"]["targets"].update(keyids=["ab" * 32]), "not in keys"),
        (
            "targets",
            lambda d: d["signed"]["delegations"]["roles"].append(
                {"name": "targets/../x", "keyids": [], "threshold": 1}
            ),
            "does not match",
        ),
    ],
)
def test_schema_refuses_bad_shapes(role: str, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(current(role))
    mutate(doc)
    with pytest.raises(Malformed, match=message):
        parse_metadata(json.dumps(doc).encode(), role)


@pytest.mark.parametrize("data", [b"not json", b'{"signed":{},"signed":{}}', b"[]", b'{"signed":NaN}'])
def test_unparseable_is_malformed(data: bytes) -> None:
    with pytest.raises(Malformed):
        parse_metadata(data, "targets")


def test_key_type_mismatch_is_malformed() -> None:
    key = PublicKey("ecdsa", b"\x01" * 32)
    with pytest.raises(Malformed):
        key.crypto_key()
    assert not key.verify("ecdsa", b"\0" * 64, b"m")
