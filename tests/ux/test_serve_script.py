"""`./scripts/serve.sh` installs once; after that it starts in about a second, with no pip output."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import REPO
from tests.s3server import free_port


def start_and_stop(tmp_path: Path) -> tuple[float, str]:
    """Seconds until serve.sh's registry logs that it listens, and everything it printed."""
    port = free_port()
    env = {**os.environ, "TRUSTREG__HTTP__ADDR": f"127.0.0.1:{port}",
           "TRUSTREG__STORAGE__FILESYSTEM__ROOT": str(tmp_path / "data")}
    started = time.monotonic()
    proc = subprocess.Popen([str(REPO / "scripts" / "serve.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "listening on" in line:
                return time.monotonic() - started, "".join(lines)
        raise AssertionError(f"serve.sh exited: {''.join(lines)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_second_start_skips_the_install(tmp_path: Path) -> None:
    start_and_stop(tmp_path)  # may install (first run on this checkout)
    elapsed, output = start_and_stop(tmp_path)
    assert output.startswith("20") and "pip" not in output and "installing" not in output, output
    assert elapsed < 4, f"serve.sh took {elapsed:.1f} s to start"
