"""Signature thresholds and root-certificate rules, the two checks every role goes through."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from trust.errors import BadRoot, BadSignature, Expired, Malformed, ThresholdNotMet
from trust.keys import MIN_RSA_BITS, PublicKey
from trust.metadata import Metadata, RoleKeys, Root

CERT_NOT_BEFORE_LEEWAY = timedelta(days=1)
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


def verify_threshold(md: Metadata, keys: Mapping[str, PublicKey], role: RoleKeys, what: str) -> set[str]:
    """Key IDs (listed for the role) whose signatures over `md` verify.

    The threshold counts distinct keys, not key IDs: one key pair listed twice (a bare key and a
    certificate of it, or two certificates) counts once. Signatures by key IDs the role does not list
    are ignored; a signature naming a listed key whose computed ID differs is an error. Raises
    ThresholdNotMet if fewer than `role.threshold` distinct keys signed.
    """
    allowed = set(role.keyids)
    valid: set[str] = set()
    signers: set[str] = set()  # the key pairs behind `valid` (their bare key IDs)
    for sig in md.signatures:
        if sig.keyid not in allowed or sig.keyid in valid:
            continue
        key = keys.get(sig.keyid)
        if key is None:
            continue
        if key.keyid != sig.keyid:
            raise BadSignature(f"{what} is signed with key ID {sig.keyid}, which is not the ID of that key")
        if key.verify(sig.method, sig.sig, md.message):
            valid.add(sig.keyid)
            signers.add(key.bare_keyid())
    if len(signers) < role.threshold:
        raise ThresholdNotMet(
            f"valid signatures did not meet threshold for {what}: {len(signers)} of {role.threshold} required "
            "(distinct keys)",
            md.role,
        )
    return valid


def check_expiry(md: Metadata, now: datetime) -> None:
    """Raise Expired if `md` has expired at `now` (expiry is exclusive: valid strictly before)."""
    if now >= md.signed.expires:
        raise Expired(f"{md.role} expired at {md.signed.expires_text}", md.role)


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def certificate_problem(key: PublicKey, gun: str, now: datetime | None) -> str | None:
    """Why `key` may not be a root key of `gun` at `now`, or None when it may.

    Rules (Notary): an X.509 certificate, CN equal to the GUN, valid at `now` (one day of leeway on
    notBefore; not checked when `now` is None), not signed with SHA-1/MD5, RSA keys of at least 2048
    bits, EC keys of at least 256.
    """
    if not key.is_x509:
        return f"root key {key.keyid} is a bare {key.keytype} key, not an X.509 certificate"
    try:
        cert = key.certificate()
        pub = key.crypto_key()
    except Malformed as exc:
        return str(exc)
    cn = _common_name(cert)
    if cn != gun:
        return f"root certificate {key.keyid} has CN {cn!r}, not the GUN {gun!r}"
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not_before > not_after:
        return f"root certificate {key.keyid} has notBefore after notAfter"
    if now is not None and now + CERT_NOT_BEFORE_LEEWAY < not_before:
        return f"root certificate {key.keyid} is not valid before {not_before.isoformat()}"
    if now is not None and now > not_after:
        return f"root certificate {key.keyid} expired at {not_after.isoformat()}"
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - unknown signature algorithm OIDs
        algorithm = None
    if algorithm is None or isinstance(algorithm, _WEAK_HASHES):
        name = algorithm.name if algorithm else "an unsupported algorithm"
        return f"root certificate {key.keyid} is signed with {name}"
    if isinstance(pub, rsa.RSAPublicKey) and pub.key_size < MIN_RSA_BITS:
        return f"root certificate {key.keyid} has a {pub.key_size}-bit RSA key (minimum {MIN_RSA_BITS})"
    if isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.key_size < 256:
        return f"root certificate {key.keyid} has a {pub.curve.key_size}-bit EC key (minimum 256)"
    return None


def valid_root_keys(root: Root, gun: str, now: datetime | None) -> tuple[dict[str, PublicKey], list[str]]:
    """Root-role keys of `root` that pass the certificate rules, and the reasons for those that fail."""
    good: dict[str, PublicKey] = {}
    problems: list[str] = []
    for keyid in dict.fromkeys(root.roles["root"].keyids):
        key = root.keys[keyid]
        problem = certificate_problem(key, gun, now)
        if problem is None:
            good[keyid] = key
        else:
            problems.append(problem)
    return good, problems


def verify_root_self(md: Metadata[Root], gun: str, now: datetime | None) -> set[str]:
    """Check a root's certificates and that a threshold of its own valid root keys signed it.

    With `now` None the certificates' validity periods are not checked (roots on the way to the
    current one may have outlived their certificates)."""
    good, problems = valid_root_keys(md.signed, gun, now)
    if not good:
        raise BadRoot(
            "could not validate the path to a trusted root: unable to retrieve valid leaf certificates ("
            + "; ".join(problems)
            + ")",
            "root",
        )
    try:
        return verify_threshold(md, good, md.signed.roles["root"], f"root version {md.version}")
    except ThresholdNotMet as exc:
        extra = f" ({'; '.join(problems)})" if problems else ""
        raise BadRoot(f"could not validate the integrity of root version {md.version}: {exc}{extra}") from exc
