"""Attestations: in-toto statements about the manifest, signed, of a predicate type, under a CEL policy.

A project's `attestations` entries must ALL accept a manifest (besides `require_any`). Candidates are
cosign's `<alg>-<hex>.att` manifest (each layer a DSSE envelope) and sigstore bundle referrers whose
statement is not a plain signature. One counts for an entry when, in order:
- its statement's `predicateType` equals the entry's `predicate_type` (others are not candidates);
- its signature satisfies ANY of `signed_by` (cosign requirements: a key of a `cosign-key` root, or a
  keyless certificate of a `sigstore` root naming an allowed identity: bundles, or `.att` layers with
  certificate and Rekor `intoto` entry annotations);
- its statement's `subject` lists this manifest's digest;
- the CEL `policy` (cel-python) over `predicate` and `statement` is true.
Refusals name the entry: `no provenance attestation`, `provenance attestation signed by an untrusted
key: ...`, `provenance attestation for another digest: ...`, `provenance policy false: <expression>`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy

from storage.references import Digest
from storage.store import RegistryStore
from trust import keyless
from trust.cosign import CosignRefusal, open_keyed_bundle, statement_about, verify_envelope
from trust.policy import SIGSTORE, AttestationRequirement, CosignRequirement, Requirement
from trust.sources import SourceResult, Subject
from trust.sources.artifacts import (
    DSSE_ENVELOPE,
    SIGSTORE_BUNDLE_PREFIX,
    BlobError,
    load_manifest,
    read_layer,
    signature_kind,
)

REFUSAL = "The image does not carry the attestations the policy requires."
MAX_ATTESTATIONS = 32


@lru_cache(maxsize=256)
def compile_policy(expression: str) -> celpy.Runner:
    """The CEL program for `expression`; ValueError if it does not compile."""
    environment = celpy.Environment()
    try:
        return environment.program(environment.compile(expression))
    except celpy.CELParseError as e:
        raise ValueError(f"not a CEL expression: {str(e).splitlines()[0]}") from e


def policy_holds(expression: str, statement: dict[str, Any]) -> bool:
    """Whether the CEL `expression` is true over `predicate` and `statement` (errors are false)."""
    try:
        activation = {"statement": celpy.json_to_cel(statement),
                      "predicate": celpy.json_to_cel(statement.get("predicate"))}
        result = compile_policy(expression).evaluate(activation)
    except (celpy.CELEvalError, TypeError, ValueError, RecursionError):
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


@dataclass
class _Candidate:
    where: str
    form: str  # "att" (a DSSE envelope layer) or "bundle"
    data: bytes
    annotations: Any


def _claimed_predicate(candidate: _Candidate) -> str | None:
    """The predicate type the (not yet verified) statement claims; None if unreadable."""
    try:
        doc = json.loads(candidate.data)
        envelope = doc if candidate.form == "att" else doc["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"]))
        return str(statement["predicateType"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _verify_signer(candidate: _Candidate, requirement: CosignRequirement) -> tuple[str, str, bytes]:
    """(signer, payload type, payload) if `requirement` accepts the candidate's signature."""
    root = requirement.trust_root
    if root.type == SIGSTORE:
        if candidate.form == "bundle":
            payload_type, body, identity = keyless.verify_bundle(candidate.data, root.sigstore, requirement.identities)
            return identity, payload_type, body
        annotations = candidate.annotations if isinstance(candidate.annotations, dict) else {}
        if keyless.CERTIFICATE_ANNOTATION not in annotations:
            raise CosignRefusal(f"signed by an untrusted key: a key-based attestation; trust root {root.name!r} "
                                "needs a keyless certificate")
        payload_type, body, identity = keyless.verify_legacy_attestation(candidate.data, annotations, root.sigstore,
                                                                         requirement.identities)
        return identity, payload_type, body
    if candidate.form == "att":
        try:
            envelope = json.loads(candidate.data)
        except (ValueError, RecursionError) as e:
            raise CosignRefusal("malformed signature: not a DSSE envelope") from e
        key, payload_type, body = verify_envelope(envelope, root.keys, root.name)
    else:
        key, payload_type, body = open_keyed_bundle(candidate.data, root.keys, root.name)
    return key.key_id, payload_type, body


def judge(candidate: _Candidate, requirement: AttestationRequirement, digest: Digest) -> str:
    """The signer if `candidate` satisfies `requirement`, else CosignRefusal naming the entry."""
    name = requirement.name
    failures = []
    for signer_requirement in requirement.signed_by:
        try:
            signer, payload_type, body = _verify_signer(candidate, signer_requirement)
            break
        except (CosignRefusal, keyless.KeylessRefusal) as e:
            failures.append(str(e))
    else:
        raise CosignRefusal(f"{name} attestation signed by an untrusted key: {failures[0]}")
    try:
        statement = statement_about(payload_type, body, digest)
    except CosignRefusal as e:
        raise CosignRefusal(f"{name} attestation for another digest: {str(e).split(': ', 1)[-1]}") from e
    if statement.get("predicateType") != requirement.predicate_type:
        raise CosignRefusal(f"no {name} attestation: the signed statement's predicate type is "
                            f"{statement.get('predicateType')!r}")
    if not policy_holds(requirement.policy, statement):
        raise CosignRefusal(f"{name} policy false: {requirement.policy}")
    return signer


class AttestationSource:
    """The `attestations:` entries: see the module docstring."""

    kind = "attestation"
    refusal = REFUSAL

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    def invalidate(self, repository: str) -> None:
        """Nothing cached here (the gate caches verdicts by signature set)."""

    async def _candidates(self, subject: Subject) -> list[_Candidate]:
        found = await subject.signatures()
        out: list[_Candidate] = []
        refs = ([found.legacy_att] if found.legacy_att else []) + list(found.referrers)
        for ref in dict.fromkeys(refs):
            loaded = await load_manifest(self.store, subject.repository, ref)
            if loaded is None or signature_kind(loaded[1]) not in ("cosign", "sigstore-bundle"):
                continue
            for i, layer in enumerate(loaded[1].get("layers") or []):
                media_type = layer.get("mediaType", "") if isinstance(layer, dict) else ""
                form = "att" if media_type == DSSE_ENVELOPE else "bundle"
                if media_type != DSSE_ENVELOPE and not media_type.startswith(SIGSTORE_BUNDLE_PREFIX):
                    continue
                try:
                    data = await read_layer(self.store, subject.repository, layer)
                except BlobError:
                    continue
                out.append(_Candidate(f"{ref} layer {i}", form, data, layer.get("annotations")))
                if len(out) >= MAX_ATTESTATIONS:
                    return out
        return out

    async def check(self, subject: Subject, requirement: Requirement) -> SourceResult:
        assert isinstance(requirement, AttestationRequirement)
        digest = subject.manifest.digest
        candidates = await self._candidates(subject)
        matching = [c for c in candidates if _claimed_predicate(c) == requirement.predicate_type]
        detail: dict[str, Any] = {"attestation": requirement.name, "predicate_type": requirement.predicate_type}
        reasons = []
        for candidate in matching:
            try:
                signer = judge(candidate, requirement, digest)
            except CosignRefusal as e:
                reasons.append({"attestation": candidate.where, "result": str(e)})
                continue
            return SourceResult(True, detail={**detail, "signer": signer, "found": candidate.where})
        if not matching:
            types = sorted({t for t in map(_claimed_predicate, candidates) if t})
            detail["found_predicate_types"] = types[:8]
            return SourceResult(False, f"no {requirement.name} attestation: none of predicate type "
                                       f"{requirement.predicate_type} refers to {digest}", detail)
        detail["attestations"] = reasons[:8]
        return SourceResult(False, reasons[0]["result"], detail)
