"""scripts/gen-notary-vectors.py regenerates the committed vectors: same structure, versions, roles
and targets (new keys and bytes), and the verifier accepts what the real clients made this time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO, require
from tests.trust.factory import EXPECTED, TESTDATA
from trust.collection import StoredTrustData, verify_trust_data
from trust.timeutil import parse_rfc3339

KEY_ID = re.compile(r"[0-9a-f]{12,64}")


def shape(folder: Path) -> list[str]:
    """The files under `folder`, key IDs replaced by `<id>`."""
    return sorted(KEY_ID.sub("<id>", p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file())


def structure(expected: dict[str, Any]) -> dict[str, Any]:
    """What must not change between two generations."""
    docker = expected["docker"]
    return {
        "gun": expected["gun"],
        "history": expected["history"],
        "current": {role: (f["version"], f["methods"]) for role, f in expected["current"].items()},
        "root_chain": [(r["version"], len(r["root_keyids"]), len(r["signed_by"])) for r in expected["root_chain"]],
        "key_types": sorted(expected["key_types"].values()),
        "delegations": [(d["name"], d["paths"], d["threshold"]) for d in expected["delegations"]],
        "targets": {role: {name: sorted(facts) for name, facts in names.items()}
                    for role, names in expected["targets"].items()},
        "private_key_roles": sorted(k["role"] for k in expected["private_keys"].values()),
        "docker": (sorted(docker["signed_tags"]), len(set(docker["signed_tags"].values())),
                   {role: f["version"] for role, f in docker["current"].items()}),
    }


def collection(folder: Path) -> StoredTrustData:
    delegations = {f"targets/{p.stem}": p.read_bytes() for p in (folder / "targets").glob("*.json")}
    return StoredTrustData(*[(folder / f"{r}.json").read_bytes() for r in ("root", "timestamp", "snapshot", "targets")],
                           delegations=delegations)


def test_vectors_regenerate_with_the_same_structure(tmp_path: Path) -> None:
    require("notary", "notary-server", "dockerd", "docker", "docker-registry", "skopeo", "openssl")
    out = tmp_path / "notary"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-notary-vectors.py"), str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = json.loads((out / "expected.json").read_text())
    assert structure(fresh) == structure(EXPECTED)
    assert shape(out) == [f for f in shape(TESTDATA) if f != "README.md"]
    assert fresh["current"]["root"]["sha256"] != EXPECTED["current"]["root"]["sha256"]  # new keys, new bytes

    now = parse_rfc3339(fresh["generated_at"])
    verified = verify_trust_data(collection(out / "current"), fresh["gun"], now)
    signed = {name: facts for names in fresh["targets"].values() for name, facts in names.items()}
    assert {name: (t.sha256, t.length) for name, t in verified.targets.items()} == {
        name: (facts["sha256"], facts["length"]) for name, facts in signed.items()}
    docker = verify_trust_data(collection(out / "docker" / "current"), fresh["docker"]["gun"], now)
    assert {name: t.sha256 for name, t in docker.targets.items()} == fresh["docker"]["signed_tags"]
