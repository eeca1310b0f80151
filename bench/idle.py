"""Benchmark 2: CPU used by `mlpipeline -r -u --wait` over 30 s with nothing to do.

Target (SPEC 11): under 1% of a core. Run: python bench/idle.py [seconds]
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    root = make_project({}, [])
    daemon = subprocess.Popen(
        mlpipeline(root, "-r", "-u", "--wait"), env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = root / "models" / "outputs" / f"log-{__import__('socket').gethostname()}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and "waiting for models.config" in log.read_text()):
        time.sleep(0.1)
    process = psutil.Process(daemon.pid)
    before, start = cpu_seconds(process), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(process) - before, time.monotonic() - start
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(30)
    share = used / elapsed
    print(f"machine: {machine()}")
    print(f"idle daemon (-r -u --wait, empty queue): {used * 1000:.0f} ms CPU in {elapsed:.1f} s = {share * 100:.3f}% of a core")
    print(f"target 1%: {share / 0.01:.3f} of the target")


if __name__ == "__main__":
    main()
