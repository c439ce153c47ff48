"""Per-project policy from the YAML config: who may do what, and where content trust is enforced.

A project is the first path component of a repository name (`secure/alpine` -> `secure`); a name
without a slash belongs to project `library`. Projects not listed use `default_project`, whose own
default is: private, no members, no enforcement.

Content trust is a list of signature requirements, `require_any`: a manifest is served if any one of
them accepts it. Each names a signature source (`notary`, `cosign`, `notation`); cosign and notation
requirements name a trust root from the top-level `trust_roots` (cosign public keys, a Sigstore
`trusted_root.json` for keyless cosign with `identities`, or X.509 CA certificates). `attestations`
entries must all accept it too (trust.attestations). The Notary-only form `{enforce, signers,
root_keys, inherit_index}` means `require_any: [notary: {signers, root_keys, inherit_index}]`.

Parsing (`Policy.from_config`) does no I/O: key and certificate files are read by
`Policy.load_trust_roots()` (enforcement calls it at start and on reload, so a bad file refuses the
configuration with a message naming its key path) or, failing that, on first use.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from config.loader import ConfigError
from trust.identities import CertificateIdentity, identity_matches, parse_identity  # noqa: F401  (re-exported)

DEFAULT_SIGNERS: tuple[str, ...] = ("targets/releases", "targets")
DEFAULT_PROJECT_NAME = "library"
COSIGN_KEY = "cosign-key"
X509_CA = "x509-ca"
X509_SIGNING_AUTHORITY = "x509-signing-authority"  # notation's `signingAuthority` trust store
X509_TYPES = (X509_CA, X509_SIGNING_AUTHORITY)
SIGSTORE = "sigstore"  # a Sigstore trusted_root.json (Fulcio CAs, Rekor logs, CT logs, TSAs), for keyless
BUILTIN = "builtin"  # the public-good trusted root shipped with sigstore-python (never fetched)
_versions = itertools.count(1)

CosignPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class PolicyError(ConfigError):
    """The content-trust policy is invalid; the message names the key path."""


# --- trust roots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    """A cosign public key; `key_id` is base64(sha256(SPKI DER)), the hint sigstore bundles carry."""

    key_id: str
    source: str
    key: CosignPublicKey = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class TrustedCertificate:
    der: bytes = field(repr=False)
    source: str
    cert: x509.Certificate = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class TrustRoot:
    """A named trust root; its material is loaded once (`load()`), from `files` (absolute paths or
    inline PEM), and is part of its identity only through the policy version."""

    name: str
    type: str
    files: tuple[str, ...]
    require_tlog: bool = True
    require_sct: bool = True
    _loaded: dict[str, tuple[Any, ...]] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def config_path(self) -> str:
        what = {COSIGN_KEY: "public_keys", SIGSTORE: "trusted_root"}.get(self.type, "certificates")
        return f"trust_roots.{self.name}.{what}"

    def load(self) -> None:
        """Read and parse every file; PolicyError names the key path and the file."""
        if "material" in self._loaded:
            return
        if self.type == SIGSTORE:
            from trust.keyless import SigstoreRoot, load_trusted_root  # sigstore-python is imported only when used

            try:
                trusted = load_trusted_root(None if self.files[0] == BUILTIN else self.files[0])
                root = SigstoreRoot(trusted, self.require_tlog, self.require_sct)
            except (OSError, ValueError) as e:
                raise PolicyError(f"config error at {self.config_path}: {self.files[0]}: {e}") from e
            # A requirement the root cannot meet would refuse every signature: say so at start instead.
            for option, present, what in (("require_tlog", root.has_tlogs, "transparency log (tlogs)"),
                                          ("require_sct", root.has_ctlogs, "CT log (ctlogs)")):
                if getattr(self, option) and not present:
                    raise PolicyError(f"config error at {self.config_path}: {self.files[0]} names no {what}, so "
                                      f"no signature could be verified; set {option}: false for a deployment "
                                      "without one")
            self._loaded["material"] = (root,)
            return
        items: list[Any] = []
        for i, ref in enumerate(self.files):
            where = f"{self.config_path}[{i}]"
            data = _read(ref, where)
            items.extend(_parse_keys(data, ref, where) if self.type == COSIGN_KEY else _parse_certs(data, ref, where))
        self._loaded["material"] = tuple(items)

    @property
    def keys(self) -> tuple[TrustedKey, ...]:
        self.load()
        return self._loaded["material"] if self.type == COSIGN_KEY else ()

    @property
    def certificates(self) -> tuple[TrustedCertificate, ...]:
        self.load()
        return self._loaded["material"] if self.type in X509_TYPES else ()

    @property
    def sigstore(self) -> Any:
        """A `sigstore` root's `trust.keyless.SigstoreRoot` (its parsed trusted_root.json and options)."""
        self.load()
        return self._loaded["material"][0]


def _read(ref: str, where: str) -> bytes:
    if ref.lstrip().startswith("-----BEGIN"):
        return ref.encode()
    try:
        with open(ref, "rb") as f:
            return f.read()
    except OSError as e:
        raise PolicyError(f"config error at {where}: cannot read {ref}: {e.strerror}") from e


def _name(ref: str) -> str:
    return "inline PEM" if ref.lstrip().startswith("-----BEGIN") else ref


def spki_key_id(key: CosignPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _parse_keys(data: bytes, ref: str, where: str) -> list[TrustedKey]:
    blocks = re.findall(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", data, re.S)
    if not blocks:
        raise PolicyError(f"config error at {where}: {_name(ref)} holds no PEM public key (BEGIN PUBLIC KEY)")
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError as e:
            raise PolicyError(f"config error at {where}: {_name(ref)} is not a readable public key: {e}") from e
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            raise PolicyError(f"config error at {where}: {_name(ref)}: RSA keys need at least 2048 bits")
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise PolicyError(f"config error at {where}: {_name(ref)}: unsupported key type (ECDSA, RSA, ed25519)")
        keys.append(TrustedKey(spki_key_id(key), _name(ref), key))
    return keys


def _parse_certs(data: bytes, ref: str, where: str) -> list[TrustedCertificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise PolicyError(f"config error at {where}: {_name(ref)} holds no readable PEM certificate: {e}") from e
    return [TrustedCertificate(c.public_bytes(serialization.Encoding.DER), _name(ref), c) for c in certs]


# --- requirements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NotaryRequirement:
    """Signed in the built-in Notary v1 trust server by one of `signers`."""

    signers: tuple[str, ...] = DEFAULT_SIGNERS
    root_keys: frozenset[str] = frozenset()
    inherit_index: bool = True
    kind: str = "notary"


@dataclass(frozen=True)
class CosignRequirement:
    """Signed with cosign (legacy `.sig` or sigstore bundle) by `min_signatures` distinct signers: keys of
    a `cosign-key` root, or (keyless, `sigstore` root) certificates naming one of `identities`."""

    trust_root: TrustRoot
    min_signatures: int = 1
    kind: str = "cosign"
    identities: tuple[CertificateIdentity, ...] = ()


@dataclass(frozen=True)
class NotationRequirement:
    """A notation signature whose chain leads to a CA of the root and whose signer matches an identity."""

    trust_root: TrustRoot
    identities: tuple[str, ...] = ("*",)
    kind: str = "notation"

    @property
    def parsed_identities(self) -> tuple[tuple[tuple[x509.ObjectIdentifier, str], ...] | None, ...]:
        return tuple(parse_identity(i) for i in self.identities)


@dataclass(frozen=True)
class AttestationRequirement:
    """An in-toto attestation of `predicate_type` about the manifest, signed as ANY of `signed_by`
    requires, whose CEL `policy` over `predicate` and `statement` is true (trust.attestations)."""

    name: str
    predicate_type: str
    signed_by: tuple[CosignRequirement, ...]
    policy: str = "true"
    kind: str = "attestation"


Requirement = NotaryRequirement | CosignRequirement | NotationRequirement | AttestationRequirement


@dataclass(frozen=True)
class ContentTrust:
    enforce: bool = False
    signers: tuple[str, ...] = DEFAULT_SIGNERS
    root_keys: frozenset[str] = frozenset()
    inherit_index: bool = True
    require_any: tuple[Requirement, ...] = (NotaryRequirement(),)
    attestations: tuple[AttestationRequirement, ...] = ()


@dataclass(frozen=True)
class Project:
    name: str
    public: bool = False
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    content_trust: ContentTrust = ContentTrust()


def project_of(repository: str) -> str:
    """`secure/alpine` -> `secure`; `alpine` -> `library`."""
    head, sep, _ = repository.partition("/")
    return head if sep else DEFAULT_PROJECT_NAME


def _requirement(entry: Any, where: str, ct: ContentTrust, roots: Mapping[str, TrustRoot]) -> Requirement:
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise PolicyError(f"config error at {where}: each entry is one of notary:, cosign:, notation:")
    kind, body = next(iter(entry.items()))
    body = body or {}
    if kind == "notary":
        return NotaryRequirement(
            signers=tuple(body.get("signers") or ct.signers),
            root_keys=frozenset(body.get("root_keys") or ct.root_keys),
            inherit_index=bool(body.get("inherit_index", ct.inherit_index)),
        )
    if kind not in ("cosign", "notation"):
        raise PolicyError(f"config error at {where}.{kind}: unknown signature source")
    name = body.get("trust_root")
    root = roots.get(name) if isinstance(name, str) else None
    if root is None:
        raise PolicyError(f"config error at {where}.{kind}.trust_root: unknown trust root {name!r}")
    wanted = (COSIGN_KEY, SIGSTORE) if kind == "cosign" else X509_TYPES
    if root.type not in wanted:
        raise PolicyError(
            f"config error at {where}.{kind}.trust_root: {name!r} is a {root.type}, {kind} needs {' or '.join(wanted)}")
    if kind == "cosign":
        identities = _identities(body.get("identities"), root, f"{where}.cosign.identities")
        return CosignRequirement(root, int(body.get("min_signatures", 1)), identities=identities)
    identities = tuple(body.get("identities") or ("*",))
    for i, identity in enumerate(identities):
        try:
            parse_identity(identity)
        except ValueError as e:
            raise PolicyError(f"config error at {where}.notation.identities[{i}]: {e}") from e
    return NotationRequirement(root, identities)


def _identities(raw: Any, root: TrustRoot, where: str) -> tuple[CertificateIdentity, ...]:
    if root.type != SIGSTORE:
        if raw:
            raise PolicyError(f"config error at {where}: identities apply to keyless (sigstore) trust roots only")
        return ()
    if not raw:
        raise PolicyError(f"config error at {where}: a keyless requirement needs at least one identity")
    out = []
    for i, entry in enumerate(raw):
        entry = entry if isinstance(entry, Mapping) else {}
        for field_name in ("issuer", "subject"):
            if (entry.get(field_name) is None) == (entry.get(f"{field_name}_regexp") is None):
                raise PolicyError(f"config error at {where}[{i}]: give {field_name} or {field_name}_regexp (one)")
            pattern = entry.get(f"{field_name}_regexp")
            if pattern is not None:
                try:
                    re.compile(pattern)
                except (re.error, TypeError) as e:
                    raise PolicyError(f"config error at {where}[{i}].{field_name}_regexp: {e}") from e
        out.append(CertificateIdentity(entry.get("issuer"), entry.get("issuer_regexp"),
                                       entry.get("subject"), entry.get("subject_regexp")))
    return tuple(out)


def _project(name: str, raw: Mapping[str, Any] | None, roots: Mapping[str, TrustRoot], where: str) -> Project:
    raw = raw or {}
    ct_raw = raw.get("content_trust") or {}
    ct = ContentTrust(
        enforce=bool(ct_raw.get("enforce", False)),
        signers=tuple(ct_raw.get("signers") or DEFAULT_SIGNERS),
        root_keys=frozenset(ct_raw.get("root_keys") or ()),
        inherit_index=bool(ct_raw.get("inherit_index", True)),
    )
    listed = ct_raw.get("require_any")
    if listed:
        reqs = tuple(_requirement(e, f"{where}.content_trust.require_any[{i}]", ct, roots)
                     for i, e in enumerate(listed))
    else:
        reqs = (NotaryRequirement(ct.signers, ct.root_keys, ct.inherit_index),)
    attestations = tuple(_attestation(e, f"{where}.content_trust.attestations[{i}]", ct, roots)
                         for i, e in enumerate(ct_raw.get("attestations") or ()))
    return Project(
        name=name,
        public=bool(raw.get("public", False)),
        members={user: frozenset(actions) for user, actions in (raw.get("members") or {}).items()},
        content_trust=ContentTrust(ct.enforce, ct.signers, ct.root_keys, ct.inherit_index, reqs, attestations),
    )


def _attestation(raw: Any, where: str, ct: ContentTrust, roots: Mapping[str, TrustRoot]) -> AttestationRequirement:
    raw = raw if isinstance(raw, Mapping) else {}
    name, predicate_type = raw.get("name"), raw.get("predicate_type")
    if not isinstance(name, str) or not name or not isinstance(predicate_type, str) or not predicate_type:
        raise PolicyError(f"config error at {where}: name and predicate_type are required")
    signed_by = []
    for i, entry in enumerate(raw.get("signed_by") or ()):
        requirement = _requirement(entry, f"{where}.signed_by[{i}]", ct, roots)
        if not isinstance(requirement, CosignRequirement):
            raise PolicyError(f"config error at {where}.signed_by[{i}]: attestations are signed with cosign")
        signed_by.append(requirement)
    if not signed_by:
        raise PolicyError(f"config error at {where}.signed_by: at least one signer is needed")
    policy = raw.get("policy", "true")
    from trust.attestations import compile_policy  # the CEL library is imported only when used

    try:
        compile_policy(str(policy))
    except ValueError as e:
        raise PolicyError(f"config error at {where}.policy: {e}") from e
    return AttestationRequirement(name, predicate_type, tuple(signed_by), str(policy))


def _trust_roots(raw: Mapping[str, Any] | None, base_dir: str | None) -> dict[str, TrustRoot]:
    base = base_dir or os.getcwd()
    roots = {}
    for name, spec in (raw or {}).items():
        spec = spec or {}
        kind = spec.get("type")
        if kind == SIGSTORE:
            roots[name] = _sigstore_root(name, spec, base)
            continue
        if kind not in (COSIGN_KEY, *X509_TYPES):
            raise PolicyError(f"config error at trust_roots.{name}.type: must be {COSIGN_KEY}, {SIGSTORE}, "
                              f"{X509_CA} or {X509_SIGNING_AUTHORITY}")
        listed = spec.get("public_keys" if kind == COSIGN_KEY else "certificates") or []
        if not listed:
            what = "public_keys" if kind == COSIGN_KEY else "certificates"
            raise PolicyError(f"config error at trust_roots.{name}.{what}: at least one is needed")
        files = tuple(f if f.lstrip().startswith("-----BEGIN") else os.path.join(base, f) for f in listed)
        roots[name] = TrustRoot(name, kind, files)
    return roots


def _sigstore_root(name: str, spec: Mapping[str, Any], base: str) -> TrustRoot:
    ref = spec.get("trusted_root")
    if not isinstance(ref, str) or not ref:
        raise PolicyError(f"config error at trust_roots.{name}.trusted_root: a path, or {BUILTIN!r}")
    options = {option: spec.get(option, True) for option in ("require_tlog", "require_sct")}
    for option, value in options.items():
        if not isinstance(value, bool):
            raise PolicyError(f"config error at trust_roots.{name}.{option}: true or false")
    return TrustRoot(name, SIGSTORE, (ref if ref == BUILTIN else os.path.join(base, ref),), **options)


@dataclass(frozen=True)
class Policy:
    """An immutable snapshot of every project's policy; `version` changes on each reload."""

    projects: Mapping[str, Project]
    default: Project
    version: int
    trust_roots: Mapping[str, TrustRoot] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], base_dir: str | None = None) -> Policy:
        """Build from a validated config document (`projects`, `default_project`, `trust_roots`);
        relative trust-root paths resolve against `base_dir` (the config file's directory)."""
        roots = _trust_roots(raw.get("trust_roots"), base_dir)
        projects = {name: _project(name, p, roots, f"projects.{name}")
                    for name, p in (raw.get("projects") or {}).items()}
        default = _project("*", raw.get("default_project"), roots, "default_project")
        return cls(projects, default, next(_versions), roots)

    def load_trust_roots(self) -> None:
        """Read every trust root's files now; PolicyError names the bad one."""
        for root in self.trust_roots.values():
            root.load()

    def project(self, repository: str) -> Project:
        name = project_of(repository)
        project = self.projects.get(name)
        if project is not None:
            return project
        return Project(name, self.default.public, self.default.members, self.default.content_trust)


class PolicyHolder:
    """The current policy, swapped atomically on reload (readers never see a half-applied one)."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy

    def reload(self, raw: Mapping[str, Any], base_dir: str | None = None) -> None:
        """Parse and load a new policy; on any error the current one stays."""
        policy = Policy.from_config(raw, base_dir)
        policy.load_trust_roots()
        self.current = policy
