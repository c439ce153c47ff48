"""The repository stands alone: nothing under tests/, scripts/, benchmarks/ or .ci/ reaches outside
it (no sibling folder of the workspace, no path climbing above the checkout, no absolute workspace path).
CI proves the same by running the suite from a copy of the repository in an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ("tests", "scripts", "benchmarks", ".ci")
GENERATED = ("tests/vectors", "benchmarks/results")  # recorded output, not code that reads paths
# The names are assembled, so that this file, which must spell out what it looks for, holds no such path.
SIBLING, WORKSPACE = "sha" + "red", "wo" + "rk"
OUTSIDE = [
    re.compile(rf"\b{SIBLING}/(harness|testdata|notes|hooks)\b"),  # the workspace's sibling folder
    re.compile(rf"""["']{SIBLING}["']\s*/"""),  # Path(...) / "<sibling>" / ...
    re.compile(rf"\.\./+{SIBLING}\b"),
    re.compile(rf"(?<![\w.])/{WORKSPACE}/"),  # an absolute path into the workspace
    re.compile(r"\b\w*(REPO|ROOT)\w*\.parent\b"),  # the folder above the repository
]
PARENTS = re.compile(r"\.parents\[(\d+)\]")


def code_files() -> list[Path]:
    files = []
    for tree in TREES:
        for path in sorted((REPO / tree).rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.is_file() and not rel.startswith(GENERATED) and "__pycache__" not in rel and path != Path(__file__):
                files.append(path)
    return files


def escapes(path: Path, text: str) -> list[str]:
    """The lines of `text` (the file at `path`) that refer to something outside the repository."""
    depth = len(path.relative_to(REPO).parts)  # parents[depth - 1] is the repository root
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        too_high = any(int(n) >= depth for n in PARENTS.findall(line))
        if too_high or any(p.search(line) for p in OUTSIDE):
            found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return found


def test_nothing_refers_outside_the_repository() -> None:
    files = code_files()
    assert any(p.name == "factory.py" for p in files) and any(p.name == "run" for p in files)
    found = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += escapes(path, text)
    assert not found, "references outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("rel", "line"),
    [
        ("tests/trust/factory.py", f'TESTDATA = Path(__file__).resolve().parents[3] / "{SIBLING}" / "testdata"'),
        ("tests/e2e/conftest.py", f'OTHER = REPO.parent / "{SIBLING}"'),
        ("benchmarks/compare.py", f'GEN_CERTS = bl.REPO.parent / "{SIBLING}" / "harness" / "gen-certs.sh"'),
        ("tests/e2e/conftest.py", f"HARNESS = Path('/{WORKSPACE}/{SIBLING}/harness')"),
        (".ci/run", f"../{SIBLING}/harness/gen-certs.sh /tmp/certs"),
        ("tests/e2e/test_x.py", "ROOT = Path(__file__).resolve().parents[3]"),
    ],
)
def test_the_check_catches_escapes(rel: str, line: str) -> None:
    assert escapes(REPO / rel, line)


@pytest.mark.parametrize(
    ("rel", "line"),
    [
        ("tests/e2e/conftest.py", "REPO = Path(__file__).resolve().parents[2]"),
        ("tests/e2e/test_s3.py", f'request(f"{{a.url}}/v2/{SIBLING}/app/blobs/uploads/", "POST")'),
        ("tests/storage/test_s3_driver.py", f's3_config(moto_endpoint, s3_bucket, prefix="{SIBLING}")'),
        ("scripts/test.sh", 'cd "$(dirname "$0")/.."'),
    ],
)
def test_the_check_allows_the_repository(rel: str, line: str) -> None:
    assert not escapes(REPO / rel, line)
