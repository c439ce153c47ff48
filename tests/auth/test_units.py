"""The auth building blocks without HTTP: scopes, required access, roles, htpasswd, tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from config.loader import ConfigError
from registry.auth.htpasswd import Htpasswd, HtpasswdError, parse_htpasswd
from registry.auth.policy import Policy, project_of
from registry.auth.scope import (
    Access,
    gun_repository,
    parse_scope,
    parse_scopes,
    required_access,
    scope_repositories,
)
from registry.auth.tokens import TokenAuthority, TokenError
from tests.auth.conftest import htpasswd_line

# -- scopes and required access -------------------------------------------------------------------


def test_parse_scope_forms() -> None:
    assert parse_scope("repository:secure/alpine:pull,push") == Access(
        "repository", "secure/alpine", frozenset({"pull", "push"}))
    assert parse_scope("repository:127.0.0.1:5000/secure/alpine:pull") == Access(
        "repository", "127.0.0.1:5000/secure/alpine", frozenset({"pull"}))
    assert parse_scope("repository:a/b:*").actions == frozenset({"pull", "push", "delete"})
    assert parse_scope("registry:catalog:*") == Access("registry", "catalog", frozenset({"*"}))
    assert parse_scope("registry:other:*") is None
    assert parse_scope("garbage") is None
    assert parse_scope("repository:a/b:fly").actions == frozenset()
    assert [a.name for a in parse_scopes(["repository:a:pull repository:b:push", "x"])] == ["a", "b"]


NAMES = ("127.0.0.1:5000", "reg.example.com")


@pytest.mark.parametrize(("method", "path", "kind", "repo", "actions"), [
    ("GET", "/v2/", "login", "", set()),
    ("GET", "/v2", "login", "", set()),
    ("GET", "/v2/_catalog", "catalog", "", set()),
    ("GET", "/v2/_trust/changefeed", "login", "", set()),
    ("GET", "/healthz", "none", "", set()),
    ("GET", "/auth/token", "none", "", set()),
    ("GET", "/v2/secure/alpine/manifests/1.0", "repository", "secure/alpine", {"pull"}),
    ("HEAD", "/v2/secure/alpine/manifests/1.0", "repository", "secure/alpine", {"pull"}),
    ("PUT", "/v2/secure/alpine/manifests/1.0", "repository", "secure/alpine", {"push"}),
    ("DELETE", "/v2/secure/alpine/manifests/sha256:ab", "repository", "secure/alpine", {"delete"}),
    ("GET", "/v2/a/b/c/blobs/sha256:ab", "repository", "a/b/c", {"pull"}),
    ("DELETE", "/v2/a/blobs/sha256:ab", "repository", "a", {"delete"}),
    ("POST", "/v2/a/b/blobs/uploads/", "repository", "a/b", {"push"}),
    ("PATCH", "/v2/a/b/blobs/uploads/u1", "repository", "a/b", {"push"}),
    ("PUT", "/v2/a/b/blobs/uploads/u1", "repository", "a/b", {"push"}),
    ("GET", "/v2/a/b/blobs/uploads/u1", "repository", "a/b", {"push"}),
    ("DELETE", "/v2/a/b/blobs/uploads/u1", "repository", "a/b", {"push"}),
    ("GET", "/v2/a/b/tags/list", "repository", "a/b", {"pull"}),
    ("GET", "/v2/a/b/referrers/sha256:ab", "repository", "a/b", {"pull"}),
    ("GET", "/v2/a/manifests/x/blobs/y", "repository", "a/manifests/x", {"pull"}),
    ("GET", "/v2/127.0.0.1:5000/secure/alpine/_trust/tuf/root.json", "repository", "secure/alpine", {"pull"}),
    ("GET", "/v2/reg.example.com/secure/alpine/_trust/tuf/targets/releases.json", "repository",
     "secure/alpine", {"pull"}),
    ("POST", "/v2/localhost/secure/alpine/_trust/tuf/", "none", "", set()),  # not a name of ours
    ("DELETE", "/v2/127.0.0.1:5000/secure/alpine/_trust/tuf/", "repository", "secure/alpine", {"delete"}),
    ("POST", "/v2/127.0.0.1:5000/x/_trust/tuf/snapshot.key", "repository", "x", {"push", "delete"}),
    ("GET", "/v2/127.0.0.1:5000/x/_trust/changefeed", "repository", "x", {"pull"}),
    ("GET", "/v2/nothing-here", "login", "", set()),
])
def test_required_access(method: str, path: str, kind: str, repo: str, actions: set[str]) -> None:
    req = required_access(method, path, NAMES)
    assert (req.kind, req.repository, set(req.actions)) == (kind, repo, actions)


def test_challenge_scope_asks_pull_with_push() -> None:
    assert required_access("POST", "/v2/secure/a/blobs/uploads/").challenge_scope() == \
        "repository:secure/a:pull,push"
    assert required_access("GET", "/v2/secure/a/manifests/1").challenge_scope() == "repository:secure/a:pull"
    assert required_access("GET", "/v2/h:1/secure/a/_trust/tuf/root.json", ["h:1"]).challenge_scope() == \
        "repository:h:1/secure/a:pull"
    assert required_access("GET", "/v2/_catalog").challenge_scope() == "registry:catalog:*"


def test_gun_and_scope_mapping() -> None:
    assert gun_repository("127.0.0.1:5000/library/alpine", NAMES) == "library/alpine"
    assert gun_repository("REG.example.com/a/b", NAMES) == "a/b"
    assert gun_repository("myreg/a/b", ["myreg"]) == "a/b"
    # only the given names: no guessing from the look of the first component
    assert gun_repository("localhost/alpine", NAMES) is None
    assert gun_repository("evil.example.com:443/a/b", NAMES) is None
    assert gun_repository("plain/a", NAMES) is None
    assert gun_repository("127.0.0.1:5000/Bad/Name", NAMES) is None
    # a token scope names a repository, or a GUN of ours, or both (each granted only if allowed)
    assert scope_repositories("127.0.0.1:5000/secure/a", NAMES) == ["secure/a"]
    assert scope_repositories("a.b/c", NAMES) == ["a.b/c"]
    assert scope_repositories("reg.example.com/c", NAMES) == ["reg.example.com/c", "c"]
    assert scope_repositories("secure/a", NAMES) == ["secure/a"]


# -- roles ---------------------------------------------------------------------------------------


POLICY = Policy.from_config({
    "auth": {"admins": ["root"]},
    "projects": {"secure": {"members": {"alice": ["pull", "push"], "carol": ["pull"]}},
                 "pub": {"public": True}},
    "default_project": {"members": {"ci": ["pull"]}},
})


def test_project_of() -> None:
    assert project_of("secure/alpine") == "secure"
    assert project_of("alpine") == "library"
    assert project_of("a/b/c") == "a"


@pytest.mark.parametrize(("principal", "repo", "actions"), [
    ("alice", "secure/x", {"pull", "push"}),
    ("carol", "secure/x", {"pull"}),
    ("stranger", "secure/x", set()),
    (None, "secure/x", set()),
    (None, "pub/x", {"pull"}),
    ("carol", "pub/x", {"pull"}),
    ("root", "secure/x", {"pull", "push", "delete"}),
    ("root", "anything", {"pull", "push", "delete"}),
    ("ci", "unlisted/x", {"pull"}),
    ("ci", "alpine", {"pull"}),
    ("alice", "alpine", set()),
])
def test_policy_actions(principal: str | None, repo: str, actions: set[str]) -> None:
    assert POLICY.actions(principal, repo) == actions


# -- htpasswd ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "kind"), [
    ("bob:$apr1$abcdefgh$0123456789012345678901", "MD5 (apr1"),
    ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
    ("bob:abCDefGHijKLm", "DES crypt"),
    ("bob:secret-in-clear-text", "plain text"),
    ("bob:$6$salt$hash", "SHA-crypt"),
    ("bob:$2y$05$short", "malformed bcrypt"),
])
def test_htpasswd_refuses_non_bcrypt(tmp_path: Path, line: str, kind: str) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(htpasswd_line("alice", "pw") + line + "\n")
    with pytest.raises(HtpasswdError) as e:
        Htpasswd.load(path)
    msg = str(e.value)
    assert "line 2" in msg and "'bob'" in msg and kind in msg and "htpasswd -B" in msg
    assert isinstance(e.value, ConfigError)


def test_htpasswd_missing_file_and_malformed_line(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdError, match="cannot read"):
        Htpasswd.load(tmp_path / "nope")
    with pytest.raises(HtpasswdError, match="expected user:hash"):
        parse_htpasswd("no-colon-here\n")


@pytest.mark.parametrize("prefix", [b"$2y$", b"$2b$", b"$2a$"])
def test_htpasswd_bcrypt_variants(tmp_path: Path, prefix: bytes) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("\n# comment\n" + htpasswd_line("alice", "s3cret", prefix))
    users = Htpasswd.load(path)
    assert "alice" in users and len(users) == 1
    assert users.check("alice", "s3cret")
    assert not users.check("alice", "wrong")
    assert not users.check("nobody", "s3cret")


def test_htpasswd_long_password_uses_first_72_bytes() -> None:
    import bcrypt

    long_pw = "x" * 100
    users = Htpasswd({"u": bcrypt.hashpw(long_pw.encode()[:72], bcrypt.gensalt(4))})
    assert users.check("u", long_pw)


def test_unknown_user_spends_bcrypt_time() -> None:
    import bcrypt

    users = Htpasswd({"u": bcrypt.hashpw(b"pw", bcrypt.gensalt(12))})
    start = time.perf_counter()
    assert not users.check("u", "wrong")
    known = time.perf_counter() - start
    start = time.perf_counter()
    assert not users.check("nobody", "wrong")
    unknown = time.perf_counter() - start
    assert unknown > known / 3  # both pay a cost-12 bcrypt, not a dict miss


# -- tokens --------------------------------------------------------------------------------------


def _authority(key: ec.EllipticCurvePrivateKey | None = None, service: str = "svc",
               issuer: str = "iss") -> TokenAuthority:
    return TokenAuthority(key or ec.generate_private_key(ec.SECP256R1()), issuer, service, 300)


ACCESS = [Access("repository", "secure/a", frozenset({"pull"}))]


def test_token_round_trip() -> None:
    auth = _authority()
    body = auth.issue("alice", ACCESS)
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    grant = auth.verify(body["token"])
    assert grant.subject == "alice"
    assert grant.grants("repository", "secure/a", frozenset({"pull"}))
    assert not grant.grants("repository", "secure/a", frozenset({"push"}))
    assert not grant.grants("repository", "secure/b", frozenset({"pull"}))
    assert jwt.get_unverified_header(body["token"])["alg"] == "ES256"
    assert auth.verify(auth.issue(None, [])["token"]).subject is None


def test_token_expired() -> None:
    auth = _authority()
    token = auth.issue("alice", ACCESS, now=time.time() - 3600)["token"]
    with pytest.raises(TokenError, match="expired"):
        auth.verify(token)


def test_token_other_service_or_issuer() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenError, match="(?i)audience"):
        _authority(key).verify(_authority(key, service="other").issue("alice", ACCESS)["token"])
    with pytest.raises(TokenError, match="(?i)issuer"):
        _authority(key).verify(_authority(key, issuer="other").issue("alice", ACCESS)["token"])


def test_token_forged_with_another_key() -> None:
    with pytest.raises(TokenError, match="Signature"):
        _authority().verify(_authority().issue("root", ACCESS)["token"])


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"iss": "iss", "aud": "svc", "sub": "root", "iat": now, "exp": now + 300,
            "access": [a.to_claim() for a in ACCESS]}


def test_token_alg_none_refused() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        _authority().verify(token)


def test_token_hs256_with_public_key_refused() -> None:
    """The classic key confusion: HMAC-sign with the public key PEM as the secret."""
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(_claims()).encode())
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    with pytest.raises(TokenError, match="alg"):
        _authority(key).verify(token)


def test_token_malformed_access_claim() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {**_claims(), "access": [{"type": "repository", "name": 3, "actions": ["pull"]}]}
    token = jwt.encode(claims, key, algorithm="ES256")
    with pytest.raises(TokenError, match="malformed"):
        _authority(key).verify(token)
