"""A throwaway project folder for the benchmarks: mlp.config, a queue, scripts."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

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
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def machine() -> str:
    cores = os.cpu_count()
    return f"{platform.node()}: {platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"


def run(command: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=environment(env), capture_output=True, text=True, check=True)
