"""Who a signature's certificate must name.

- notation: trusted identities in notation's `x509.subject: C=.., ST=.., O=.., CN=..` form, matched
  attribute by attribute against the leaf certificate's subject;
- keyless cosign: a Fulcio certificate's OIDC issuer and subject (SAN), each exactly or by a regular
  expression matched against the whole value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

DN_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME, "SERIALNUMBER": NameOID.SERIAL_NUMBER, "E": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS, "DC": NameOID.DOMAIN_COMPONENT, "STREET": NameOID.STREET_ADDRESS,
    "POSTALCODE": NameOID.POSTAL_CODE, "UID": NameOID.USER_ID,
}
X509_SUBJECT = "x509.subject:"


def parse_identity(text: str) -> tuple[tuple[x509.ObjectIdentifier, str], ...] | None:
    """`"*"` -> None (any identity); `"x509.subject: C=US, ST=WA, O=Example, CN=x"` -> its attributes.
    Like notation, the DN must hold C, ST (or S) and O; `\\,` escapes a comma. ValueError if invalid."""
    if text.strip() == "*":
        return None
    if not text.startswith(X509_SUBJECT):
        raise ValueError(f"identity {text!r} must be \"*\" or start with {X509_SUBJECT!r}")
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in text[len(X509_SUBJECT):]:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",;":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    attrs: list[tuple[x509.ObjectIdentifier, str]] = []
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip().upper()
        if not sep or not value.strip() or key not in DN_ATTRIBUTES:
            raise ValueError(f"identity {text!r}: {part.strip()!r} is not an attribute=value of a known type")
        attrs.append((DN_ATTRIBUTES[key], value.strip()))
    present = {oid for oid, _ in attrs}
    for oid, label in ((NameOID.COUNTRY_NAME, "C"), (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
                       (NameOID.ORGANIZATION_NAME, "O")):
        if oid not in present:
            raise ValueError(f"identity {text!r} must contain C, ST and O (missing {label})")
    return tuple(attrs)


def identity_matches(identity: tuple[tuple[x509.ObjectIdentifier, str], ...] | None, subject: x509.Name) -> bool:
    """Every attribute of the trusted identity is in the certificate's subject (notation's rule)."""
    if identity is None:
        return True
    return all(value in [str(a.value) for a in subject.get_attributes_for_oid(oid)] for oid, value in identity)



@dataclass(frozen=True)
class CertificateIdentity:
    """Who a keyless certificate must name: its OIDC issuer and its subject (SAN), each exactly or by a
    regular expression matched against the whole value (`re.fullmatch`)."""

    issuer: str | None = None
    issuer_regexp: str | None = None
    subject: str | None = None
    subject_regexp: str | None = None

    def as_json(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v is not None}

    def matches(self, issuer: str | None, subjects: list[str]) -> bool:
        if issuer is None or not _match(issuer, self.issuer, self.issuer_regexp):
            return False
        return any(_match(s, self.subject, self.subject_regexp) for s in subjects)


def _match(value: str, exact: str | None, pattern: str | None) -> bool:
    return value == exact if exact is not None else re.fullmatch(str(pattern), value) is not None
