"""Bearer tokens of the Docker registry token flow: ES256 JWTs issued and verified here.

- `issue` signs `{iss, sub, aud, exp, nbf, iat, jti, access}`; `sub` is "" for anonymous.
- `verify` accepts only ES256 signed by our key (so `alg: none`, HS256 tricks and other keys fail)
  with our issuer, our service as audience, an unexpired `exp`, and a well-formed `access` claim.
- The signing key comes from `auth.token.key` (a PEM EC P-256 private key) or, when absent, from
  storage (`auth/token-signing-key.pem`), generated on first use, so every replica signs alike.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config.loader import ConfigError
from registry.auth.scope import Access
from storage.base import PathNotFoundError, StorageDriver

log = logging.getLogger("trustreg.auth")
KEY_OBJECT = "auth/token-signing-key.pem"


class TokenError(Exception):
    """A bearer token is not acceptable; the message says why (never echoes the token)."""


@dataclass(frozen=True)
class TokenGrant:
    """What a verified token says: who (None: anonymous) and which access."""

    subject: str | None
    access: tuple[Access, ...]

    def grants(self, type_: str, name: str, actions: frozenset[str]) -> bool:
        held: set[str] = set()
        for a in self.access:
            if a.type == type_ and a.name == name:
                held |= a.actions
        return actions <= held


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")


def _parse_key(pem: bytes, source: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config error at auth.token.key: {source} is not an unencrypted PEM private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"config error at auth.token.key: {source} must be an EC P-256 key (tokens are ES256)")
    return key


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key_file(path: str | Path) -> ec.EllipticCurvePrivateKey:
    try:
        pem = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"config error at auth.token.key: cannot read {path}: {e.strerror}") from e
    return _parse_key(pem, str(path))


async def load_or_create_key(driver: StorageDriver) -> ec.EllipticCurvePrivateKey:
    """The key kept in storage; made and stored on first use. Created only if absent, so replicas
    starting together on empty storage all end up with the one key that was stored first."""
    try:
        return _parse_key(await driver.get(KEY_OBJECT), KEY_OBJECT)
    except PathNotFoundError:
        pass
    if await driver.put_if_absent(KEY_OBJECT, _pem(ec.generate_private_key(ec.SECP256R1()))):
        log.info("generated a token signing key in storage at %s", KEY_OBJECT)
    return _parse_key(await driver.get(KEY_OBJECT), KEY_OBJECT)


def _parse_access(claim: Any) -> tuple[Access, ...]:
    if not isinstance(claim, list):
        raise TokenError("access claim is not a list")
    out = []
    for entry in claim:
        if not isinstance(entry, dict):
            raise TokenError("access entry is not an object")
        type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(type_, str) or not isinstance(name, str) or not isinstance(actions, list) \
                or not all(isinstance(a, str) for a in actions):
            raise TokenError("malformed access entry")
        out.append(Access(type_, name, frozenset(actions)))
    return tuple(out)


class TokenAuthority:
    """Signs and verifies the registry's bearer tokens."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str, service: str, expiry: int) -> None:
        self.issuer = issuer
        self.service = service
        self.expiry = expiry
        self._key = key
        self._public = key.public_key()
        self.kid = key_id(self._public)

    def issue(self, subject: str | None, access: list[Access], now: float | None = None) -> dict[str, Any]:
        """The token response body: `{token, access_token, expires_in, issued_at}`."""
        now = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": self.service,
            "exp": now + self.expiry,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [a.to_claim() for a in access],
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": self.expiry, "issued_at": issued}

    def verify(self, token: str) -> TokenGrant:
        """The grant a token carries; TokenError if anything about it is wrong."""
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["ES256"],
                audience=self.service,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise TokenError(f"invalid token: {e}") from e
        subject = claims.get("sub")
        if not isinstance(subject, str):
            raise TokenError("invalid token: sub is not a string")
        return TokenGrant(subject or None, _parse_access(claims.get("access", [])))
