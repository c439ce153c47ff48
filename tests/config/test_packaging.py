"""The built wheel carries every module and data file the installed `trustreg` needs (the container
image installs it non-editable, so a package left out only shows up there)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA_SUFFIXES = (".py", ".json", ".yaml", ".html", ".css", ".js")


def test_wheel_contains_every_module_and_data_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("trustreg-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(REPO))
        for package in ("registry", "trust", "storage", "config")
        for p in (REPO / package).rglob("*")
        if p.is_file() and p.suffix in DATA_SUFFIXES and "__pycache__" not in p.parts
    }
    assert expected - names == set()
