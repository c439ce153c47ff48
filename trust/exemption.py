"""Which manifests the gate serves without a signature: signature artifacts, proven by their content.

Signatures are not themselves signed, yet verifiers (`cosign verify`, `notation verify`, docker) must
read them from enforced projects. The exemption is an attack surface: anything a container runtime
could run must never pass through it. So it rests on content, never on labels:
- the manifest is read as Go reads it (trust.strictjson; ambiguous documents are never exempt), is an
  image manifest of the media type the format prescribes, and is classified by its own fields
  (`signature_kind`: artifact type, config media type, and every layer of the signature's type);
- every layer blob is read (bounded, hashed against its descriptor) and parses as that format:
  cosign simple-signing payload or DSSE envelope, sigstore bundle, notation JWS or COSE envelope;
- the config gives a runtime nothing to start: the OCI empty config `{}` (notation, sigstore bundles),
  or for cosign's legacy `.sig`/`.att` an image configuration with no runtime `config`, no platform,
  and a `rootfs` of exactly the signature layers (so a runtime cannot find, by `rootfs.diff_ids`,
  snapshots already unpacked from a signed image and start them under another command).
The referrers-tag-schema index (`<alg>-<hex>` tag, OCI index media type) is served too: an index only
lists, and each manifest it lists is gated when pulled. Outcomes are remembered per (repository,
manifest digest, media type served): content is immutable, so an outcome holds for as long as the digest names it
(except a refusal for a missing blob, which a later upload can change).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from storage.store import Manifest, RegistryStore
from trust import strictjson
from trust.notation import NotationRefusal, parse_cose, parse_jws
from trust.sources.artifacts import (
    COSIGN_SIMPLESIGNING,
    DSSE_ENVELOPE,
    NOTATION_ENVELOPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SIGSTORE_BUNDLE_PREFIX,
    BlobError,
    BlobMissingError,
    read_layer,
    signature_kind,
    strict_doc,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
EMPTY_CONFIG = ("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", 2)  # `{}`
MAX_SIGNATURE_LAYERS = 64
# Keys a cosign legacy config may have: none of them tells a runtime what to start.
_COSIGN_CONFIG_KEYS = frozenset({"architecture", "os", "created", "author", "history", "rootfs", "config"})
_TAG_SCHEME = re.compile(r"^(sha256|sha512)-[0-9a-f]{64,128}$")
_SIMPLE_SIGNING_TYPES = ("cosign container image signature", "atomic container signature")


class NotProven(Exception):
    """The manifest is not shown to be a signature artifact; the message says why."""

    def __init__(self, message: str, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting  # False: may change when missing content arrives


class SignatureExemption:
    """Decides, from content, whether a manifest is a signature artifact the gate may serve."""

    def __init__(self, store: RegistryStore, cache_size: int = 10_000) -> None:
        self.store = store
        self._cache_size = cache_size
        self._outcomes: OrderedDict[tuple[str, str, str], bool] = OrderedDict()

    async def exempt(self, repository: str, tag: str | None, manifest: Manifest) -> bool:
        """Whether `manifest` (read from `repository`, by `tag` if given) is served unjudged."""
        if tag is not None and _TAG_SCHEME.match(tag) and manifest.media_type == OCI_INDEX:
            doc = strict_doc(manifest)  # only lists: an index that also carries image fields is gated
            return doc is not None and "config" not in doc and "layers" not in doc
        key = (repository, str(manifest.digest), manifest.media_type)  # the type it is served as counts too
        outcome = self._outcomes.get(key)
        if outcome is not None:
            self._outcomes.move_to_end(key)
            return outcome
        try:
            await self.prove(repository, manifest)
            outcome = True
        except NotProven as e:
            if not e.lasting:
                return False
            outcome = False
        self._outcomes[key] = outcome
        if len(self._outcomes) > self._cache_size:
            self._outcomes.popitem(last=False)
        return outcome

    async def prove(self, repository: str, manifest: Manifest) -> str:
        """The signature kind of `manifest`, or NotProven with the reason."""
        doc = strict_doc(manifest)
        kind = signature_kind(doc) if doc is not None else None
        if doc is None or kind is None:
            raise NotProven("not a signature artifact manifest")
        allowed = (OCI_MANIFEST, DOCKER_MANIFEST) if kind == "cosign" else (OCI_MANIFEST,)
        if manifest.media_type not in allowed or doc.get("mediaType", manifest.media_type) != manifest.media_type:
            raise NotProven(f"a {kind} signature is not served as {manifest.media_type}")
        if "manifests" in doc:
            raise NotProven("a signature artifact does not list manifests")
        layers = doc["layers"]
        if len(layers) > MAX_SIGNATURE_LAYERS:
            raise NotProven(f"more than {MAX_SIGNATURE_LAYERS} signature layers")
        if kind == "cosign":
            await self._cosign_config(repository, doc.get("config"), layers)
        else:
            _empty_config(doc.get("config"))
        for layer in layers:
            _check_layer(layer["mediaType"], await self._blob(repository, layer))
        return kind

    async def _blob(self, repository: str, descriptor: Any) -> bytes:
        try:
            return await read_layer(self.store, repository, descriptor)
        except BlobError as e:
            raise NotProven(str(e), lasting=not isinstance(e, BlobMissingError)) from e

    async def _cosign_config(self, repository: str, descriptor: Any, layers: list[dict[str, Any]]) -> None:
        if not isinstance(descriptor, dict) or descriptor.get("mediaType") not in IMAGE_CONFIGS:
            raise NotProven("a cosign signature's config is an image configuration")
        config = _strict(await self._blob(repository, descriptor), strictjson.CONFIG_FIELDS, "config")
        extra = set(config) - _COSIGN_CONFIG_KEYS
        if extra:
            raise NotProven(f"signature config has runtime fields {sorted(extra)[:5]}")
        if config.get("config", {}) != {}:
            raise NotProven("signature config tells a runtime what to run")
        if config.get("architecture", "") != "" or config.get("os", "") != "":
            raise NotProven("signature config names a platform")
        diff_ids = [layer.get("digest") for layer in layers]
        if config.get("rootfs") != {"type": "layers", "diff_ids": diff_ids}:
            raise NotProven("signature config's rootfs is not exactly its signature layers")


def _empty_config(descriptor: Any) -> None:
    if not isinstance(descriptor, dict) or (descriptor.get("digest"), descriptor.get("size")) != EMPTY_CONFIG:
        raise NotProven("a signature's config is the empty config {}")


def _strict(data: bytes, fields: strictjson.Fields, what: str) -> dict[str, Any]:
    try:
        doc = strictjson.loads(data, fields)
    except (ValueError, RecursionError) as e:
        raise NotProven(f"{what} is not unambiguous JSON: {e}") from e
    if not isinstance(doc, dict):
        raise NotProven(f"{what} is not a JSON object")
    return doc


def _check_layer(media_type: str, data: bytes) -> None:
    """The layer blob parses as the signature format its media type names."""
    if media_type in NOTATION_ENVELOPES:
        try:
            (parse_jws if media_type == "application/jose+json" else parse_cose)(data)
        except NotationRefusal as e:
            raise NotProven(f"layer is not a notation envelope: {e}") from e
        return
    doc = _strict(data, strictjson.ANY_FIELDS, "signature layer")
    if media_type == COSIGN_SIMPLESIGNING:
        critical = doc.get("critical")
        image = critical.get("image") if isinstance(critical, dict) else None
        if (not isinstance(image, dict) or critical.get("type") not in _SIMPLE_SIGNING_TYPES
                or not isinstance(image.get("docker-manifest-digest"), str)):
            raise NotProven("layer is not a simple-signing payload")
    elif media_type == DSSE_ENVELOPE:
        if not (isinstance(doc.get("payloadType"), str) and isinstance(doc.get("payload"), str)
                and isinstance(doc.get("signatures"), list)):
            raise NotProven("layer is not a DSSE envelope")
    elif media_type.startswith(SIGSTORE_BUNDLE_PREFIX):
        if not str(doc.get("mediaType", "")).startswith(SIGSTORE_BUNDLE_PREFIX):
            raise NotProven("layer is not a sigstore bundle")
    else:
        raise NotProven(f"layer media type {media_type[:100]!r} is not a signature format")
