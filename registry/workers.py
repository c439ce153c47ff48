"""`http.workers: N`: a supervisor process runs N `trustreg serve` workers sharing the port
(SO_REUSEPORT). Signals are forwarded (SIGTERM/SIGINT drain, SIGHUP reload); a worker that dies
after start-up is restarted, one that fails at start-up stops the whole server."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from prometheus_client import multiprocess

log = logging.getLogger("trustreg")
WORKER_ENV = "TRUSTREG_WORKER"
STARTUP_GRACE = 5.0


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def supervise(count: int, argv: list[str]) -> int:
    """Run `count` copies of this command as workers until told to stop; returns the exit code."""
    cmd = [sys.executable, "-m", "registry.cli", *argv]
    metrics_dir = tempfile.mkdtemp(prefix="trustreg-metrics-")  # prometheus multiprocess mode
    env = {**os.environ, WORKER_ENV: "1", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    try:
        return _supervise(count, cmd, env, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(count: int, cmd: list[str], env: dict[str, str], metrics_dir: str) -> int:
    workers: list[tuple[subprocess.Popen, float]] = [(subprocess.Popen(cmd, env=env), time.monotonic())
                                                     for _ in range(count)]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for proc, _ in workers:
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    log.info("supervising %d workers", count)
    while True:
        time.sleep(0.2)
        if stopping:
            codes = [proc.wait() for proc, _ in workers]
            return max(codes, default=0)
        for i, (proc, started) in enumerate(workers):
            code = proc.poll()
            if code is None:
                continue
            if time.monotonic() - started < STARTUP_GRACE:
                log.error("worker exited with %s during start-up; stopping", code)
                forward(signal.SIGTERM, None)
                for other, _ in workers:
                    other.wait()
                return code or 1
            log.warning("worker %d exited with %s; restarting", proc.pid, code)
            multiprocess.mark_process_dead(proc.pid, path=metrics_dir)
            workers[i] = (subprocess.Popen(cmd, env=env), time.monotonic())
