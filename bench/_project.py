"""A throwaway project folder for the benchmarks: mlp.config, a queue, scripts."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


def make_project(scripts: Dict[str, str], queue: Sequence[str], mlp_extra: str = "") -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlpipeline-bench-"))
    (root / "models").mkdir()
    (root / "mlp.config").write_text(f'[MLP]\nmodels_dir = "models"\n{mlp_extra}')
    for name, text in scripts.items():
        (root / "models" / name).write_text(text)
    (root / "models.config").write_text(f"[WHITELISTED_MODELS]\nscripts = {json.dumps(list(queue))}\n")
    return root


def mlpipeline(root: Path, *args: str, env: Optional[Dict[str, str]] = None) -> List[str]:
    return [sys.executable, "-m", "mlpipeline", "-C", str(root), *args]


def environment(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    # As an installed package runs: its bytecode compiled (pip does it at install), not every
    # module compiled again in every child, which a shell's PYTHONDONTWRITEBYTECODE would cause.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def machine() -> str:
    cores = os.cpu_count()
    return f"{platform.node()}: {platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"


def run(command: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=environment(env), capture_output=True, text=True, check=True)


def write_journal(path: Path, events: int, scripts: int, sha256: Callable[[str], str]) -> None:
    """A journal of ``events`` events: claimed, started, finished for versions v0, v1, ... of
    ``scripts`` scripts in turn, a busy year of a queue. Written directly, without an fsync per
    event, or the setup would take longer than what it measures."""
    cycle = ["claimed", "started", "finished"]
    with open(path, "w") as handle:
        for index in range(events):
            version = index // 3
            script = f"model_{version % scripts}.py"
            record: Dict[str, Any] = {
                "time": "2026-11-22T01:00:00.000+00:00",
                "event": cycle[index % 3],
                "host": "gpu1",
                "pid": 1234,
                "daemon": "gpu1:1234:1795312570.31",
                "script": script,
                "sha256": sha256(script),
                "version": f"v{version // scripts}",
                "run_id": f"{version:012x}",
                "attempt": 1,
            }
            if record["event"] == "finished":
                record.update(duration_s=12.5, reason=None, exit_code=0, signal=None, metrics={"loss": 0.01})
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
