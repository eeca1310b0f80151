"""``<model_dir>/.mlpipeline/``: what made the model in that folder.

The child writes it from the very bytes it imported: a copy of the script, the version's
parameters, and run.json (run id, git commit, host, software). The daemon adds how the run
ended. A resumed run rewrites it, so it always describes the latest run in the folder; each
run's own record stays in results.jsonl.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

from mlpipeline.records.files import write_bytes_atomic, write_json_atomic
from mlpipeline.records.lines import read_object

RECORD_DIR = ".mlpipeline"
RUN_FILE = "run.json"
PARAMETERS_FILE = "parameters.json"
CONFIGS_DIR = "configs"
"""The configuration files a version made from them ran with (script_support/config_files.py)."""


def record_dir(model_dir: Path) -> Path:
    return Path(model_dir) / RECORD_DIR


def write_run_record(
    model_dir: Path,
    script_name: str,
    source: bytes,
    parameters: Dict[str, Any],
    run: Dict[str, Any],
    configs: Optional[Dict[str, bytes]] = None,
) -> None:
    """Write the script copy, parameters.json and run.json for the run starting in ``model_dir``;
    and ``configs``, the configuration files of a version made from them, in configs/."""
    folder = record_dir(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / CONFIGS_DIR
    if kept.is_dir():
        import shutil  # here: only versions made from configuration files have this folder

        shutil.rmtree(kept)  # an earlier run's files: this run's alone describe it
    for name, data in (configs or {}).items():
        (kept / name).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(kept / name, data)
    own = (script_name, PARAMETERS_FILE, RUN_FILE)
    for old in folder.iterdir():
        # A script renamed since the last run (its old copy would mislead), and temporary
        # files of these three that a run killed while it wrote them left (the daemon's own
        # files here, such as a tracker's, are not this process's to touch).
        leftover = old.name.endswith(".tmp") and any(old.name.startswith(f".{name}.") for name in own)
        if (old.suffix == ".py" and old.name != script_name) or leftover:
            old.unlink()
    write_bytes_atomic(folder / script_name, source)
    write_json_atomic(folder / PARAMETERS_FILE, parameters)
    write_json_atomic(folder / RUN_FILE, run)


def update_run_record(model_dir: Path, run_id: str, **fields: Any) -> bool:
    """Add ``fields`` to run.json if it describes run ``run_id``; False when it does not."""
    path = record_dir(model_dir) / RUN_FILE
    run = read_object(path)
    if run is None or run.get("run_id") != run_id:
        return False
    run.update(fields)
    write_json_atomic(path, run)
    return True


def parameters_of_run(model_dir: Path, run_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The parameters the latest run in ``model_dir`` wrote at its start (of run ``run_id``
    only, when given); None when there are none, or they are another run's."""
    if run_id is not None:
        run = read_run_record(model_dir)
        if run is None or run.get("run_id") != run_id:
            return None  # its child ended before it wrote them: an older run's are not its own
    return read_object(record_dir(model_dir) / PARAMETERS_FILE)


def run_record_unreadable(model_dir: Path) -> Optional[Path]:
    """run.json, where something stands there that is no record (a folder, a FIFO, bytes
    that are no JSON object); None where it is one, or is not there."""
    path = record_dir(model_dir) / RUN_FILE
    return path if os.path.lexists(path) and read_object(path) is None else None


def read_run_record(model_dir: Path) -> Optional[Dict[str, Any]]:
    return read_object(record_dir(model_dir) / RUN_FILE)

