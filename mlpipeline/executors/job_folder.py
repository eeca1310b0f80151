"""A Slurm job's folder: the channel between the daemon on the login node and the version's
job on its compute node. No socket crosses: on many clusters the compute nodes reach the login
node through the shared file system only.

The daemon writes the request and the batch script, and after sbatch, which job it is; the job
writes where it runs (``placed.json``), everything the version says (``output.jsonl``, one JSON
line per batch of lines or per event, appended) and at last how it ended (``end.json``). Both
sides read through records/lines.py: no byte sequence in these files can crash either.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.executors.protocol import EVENT, LINES, REQUEST_FILE, TaskEnd
from mlpipeline.records.files import json_text, regular_file_opener, write_json_atomic
from mlpipeline.records.lines import FileTail, RecordError, decode_object, read_object

JOBS_FOLDER = "slurm-jobs"
"""The jobs' folders, in the outputs folder (which the compute nodes see at the same path)."""

Said = Tuple[Any, ...]
"""One thing a version said: ``(LINES, stream, [text, ...])`` or ``(EVENT, event)``."""


class JobFolder:
    """The files of one job, by name."""

    def __init__(self, path: Path) -> None:
        self.path = path

    request = property(lambda self: self.path / REQUEST_FILE)
    batch_script = property(lambda self: self.path / "job.sh")
    submitted = property(lambda self: self.path / "submitted.json")
    placed = property(lambda self: self.path / "placed.json")
    output = property(lambda self: self.path / "output.jsonl")
    delivered = property(lambda self: self.path / "delivered.json")
    end = property(lambda self: self.path / "end.json")
    slurm_output = property(lambda self: self.path / "slurm.out")

    # -- the daemon's side -------------------------------------------------------------

    def write_submitted(self, job_id: str, daemon: str) -> None:
        write_json_atomic(self.submitted, {"job_id": job_id, "daemon": daemon}, durable=False)

    def job_id(self) -> Optional[str]:
        """The Slurm job this folder is for: from the daemon's note, else from the job's own."""
        for path in (self.submitted, self.placed):
            record = read_object(path) or {}
            job_id = record.get("job_id", record.get("slurm_job"))
            if isinstance(job_id, str) and job_id.isdigit():
                return job_id
        return None

    def read_placed(self) -> Optional[Dict[str, Any]]:
        """Where the job runs, its fields of the types the records name; None until written."""
        placed = read_object(self.placed)
        if placed is None:
            return None
        where: Dict[str, Any] = {key: str(placed[key]) for key in ("slurm_job", "node_host", "slurm_node") if isinstance(placed.get(key), (str, int))}
        if _whole(placed.get("node_pid")):
            where["node_pid"] = placed["node_pid"]
        gpus = placed.get("gpus")
        where["gpus"] = [str(gpu) for gpu in gpus if isinstance(gpu, (str, int))] if isinstance(gpus, list) else []
        return where

    def read_end(self) -> Optional[TaskEnd]:
        """The job's end, once written whole, each field checked; a file that is not a JSON
        object is an end that says nothing (recorded as a job that ended without its version's
        word)."""
        if not self.end.exists():
            return None
        end = read_object(self.end) or {}
        result = end.get("result")
        signals = end.get("signals")
        cpu = end.get("cpu_s")
        wall = end.get("wall_s")
        return TaskEnd(
            result=result if isinstance(result, dict) else None,  # type: ignore[typeddict-item]
            returncode=end["returncode"] if _whole(end.get("returncode")) else None,
            cpu_s=float(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None,
            wall_s=float(wall) if isinstance(wall, (int, float)) and not isinstance(wall, bool) and 0 <= wall < 1e9 else None,
            peak_rss_bytes=end["peak_rss_bytes"] if _whole(end.get("peak_rss_bytes")) else None,
            signals=[item for item in signals if isinstance(item, str)] if isinstance(signals, list) else [],
        )

    def delivered_offset(self) -> int:
        offset = (read_object(self.delivered) or {}).get("offset")
        return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else 0

    def slurm_output_tail(self, lines: int = 5) -> str:
        """The last lines Slurm wrote for the job itself (the batch script's own errors)."""
        try:
            with open(self.slurm_output, "rb", opener=regular_file_opener) as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - 4096))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    # -- the job's side ------------------------------------------------------------------

    def write_placed(self, placement: Dict[str, Any]) -> None:
        write_json_atomic(self.placed, placement, durable=False)

    def write_end(self, end: TaskEnd) -> None:
        write_json_atomic(self.end, end, durable=True)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class OutputWriter:
    """The job's side of output.jsonl: each batch of lines, each event, one line appended and
    flushed (from the threads that read the version's pipes)."""

    def __init__(self, folder: JobFolder) -> None:
        self._handle = open(folder.output, "a", encoding="utf-8", opener=regular_file_opener)
        self._lock = threading.Lock()

    def lines(self, stream: str, lines: List[str]) -> None:
        self._write({"stream": stream, "lines": lines})

    def event(self, event: Dict[str, Any]) -> None:
        self._write({"event": event})

    def _write(self, record: Dict[str, Any]) -> None:
        text = json_text(record) + "\n"
        with self._lock:
            self._handle.write(text)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            self._handle.close()


class OutputReader:
    """The daemon's side of output.jsonl: what was appended since the last read, from
    ``offset`` on (where an earlier daemon left off, for a job adopted)."""

    def __init__(self, folder: JobFolder, offset: int = 0) -> None:
        self._folder = folder
        self._tail = FileTail(folder.output)
        self._tail.skip_to(offset)

    def read_new(self) -> List[Said]:
        said: List[Said] = []
        try:
            read = self._tail.read_new()
        except OSError:
            return said  # no regular file (put there by hand): its lines are lost, its end comes by end.json
        for _, data in read.lines:
            if data is None:
                continue
            try:
                record = decode_object(data)
            except RecordError:
                continue  # a line a hostile or broken writer left: not the version's
            if isinstance(record.get("event"), dict):
                said.append((EVENT, record["event"]))
            elif record.get("stream") in ("stdout", "stderr") and isinstance(record.get("lines"), list):
                said.append((LINES, record["stream"], [str(line) for line in record["lines"]]))
        return said

    def note_delivered(self) -> None:
        """Write down how far the output was delivered, for a daemon that adopts the job later."""
        try:
            write_json_atomic(self._folder.delivered, {"offset": self._tail.whole_lines_offset}, durable=False)
        except OSError:
            pass
