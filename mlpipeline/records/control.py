"""``outputs/control.jsonl``: what people asked of the queue from the command line while it
runs: cancel a script or a version, pause, resume. One JSON line a request, appended under
a lock of its own; every daemon on the folder, on any host, reads the new lines as it reads
the journal, so a request made anywhere reaches them all."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from filelock import FileLock

from mlpipeline.records.files import json_text, now_iso
from mlpipeline.records.identity import hostname
from mlpipeline.records.paths import OutputPaths

CONTROL_FILE = "control.jsonl"
CANCEL, PAUSE, RESUME = "cancel", "pause", "resume"


@dataclass(frozen=True)
class ControlRequest:
    action: str
    script: Optional[str] = None
    version: Optional[str] = None
    time: str = ""
    host: str = ""

    def matches(self, script: str, version: str) -> bool:
        """Whether this cancel names ``script:version`` (a whole script names all its versions)."""
        return self.script == script and self.version in (None, version)

    @property
    def target(self) -> str:
        return str(self.script) if self.version is None else f"{self.script}:{self.version}"


def control_path(outputs_dir: Path) -> Path:
    return Path(outputs_dir) / CONTROL_FILE


def append_request(outputs_dir: Path, action: str, script: Optional[str] = None, version: Optional[str] = None) -> ControlRequest:
    """Append one request, durably, and return it."""
    request = ControlRequest(action, script, version, now_iso(), hostname())
    record: Dict[str, Any] = {"time": request.time, "action": action, "host": request.host, "pid": os.getpid()}
    if script is not None:
        record.update(script=script, version=version)
    path = control_path(outputs_dir)
    with FileLock(str(OutputPaths.lock_for(path))):
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json_text(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    return request


class ControlReader:
    """Reads the requests appended since the last read; a line still being written waits."""

    def __init__(self, outputs_dir: Path) -> None:
        self._path = control_path(outputs_dir)
        self._offset = 0

    def read_new(self) -> List[ControlRequest]:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        except OSError:
            return []  # read again on the next pass
        end = data.rfind(b"\n") + 1
        self._offset += end
        requests = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("action") in (CANCEL, PAUSE, RESUME):
                requests.append(
                    ControlRequest(
                        record["action"], record.get("script"), record.get("version"), str(record.get("time", "")), str(record.get("host", ""))
                    )
                )
        return requests


def paused_by(requests: List[ControlRequest]) -> Optional[ControlRequest]:
    """The pause in force after ``requests`` (the last pause with no resume after it), if any."""
    state: Optional[ControlRequest] = None
    for request in requests:
        if request.action == PAUSE:
            state = request
        elif request.action == RESUME:
            state = None
    return state
