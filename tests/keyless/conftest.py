"""Fixtures: the signature tests' store and gate factory, and a private Sigstore instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.keyless.sigstore_instance import GITHUB, SigstoreInstance
from tests.signatures.conftest import make_gate, registry_store  # noqa: F401  (fixtures)


@pytest.fixture
def sigstore() -> SigstoreInstance:
    return SigstoreInstance()


def keyless_policy(root_path: Path | str, identities: list[dict[str, str]] | None = None,
                   **options: Any) -> dict[str, Any]:
    """Project `secure` requires a keyless cosign signature under root `corp` (`trusted_root: root_path`)."""
    identities = identities or [{"issuer": GITHUB,
                                 "subject_regexp": r"^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*$"}]
    return {"trust_roots": {"corp": {"type": "sigstore", "trusted_root": str(root_path), **options}},
            "projects": {"secure": {"content_trust": {"enforce": True, "require_any": [
                {"cosign": {"trust_root": "corp", "identities": identities}}]}}}}


@pytest.fixture
def root_file(sigstore: SigstoreInstance, tmp_path: Path) -> Path:
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(sigstore.trusted_root()))
    return path
