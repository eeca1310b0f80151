"""The files people and tools read: log-<host>, output-<host> and results.jsonl.

All three are appended under a file lock, one flush per write, with terminal escape codes
stripped, so ``tail -f`` is live and several daemons never interleave within a line.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from mlpipeline.records.file_lock import FileLock
from mlpipeline.records.files import appended_file_opener, json_text, naming_file, now_iso, regular_file_opener
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.provenance import describe_dvc, describe_git
from mlpipeline.records.text import one_line, plain_lines, plain_text, visible_lines, without_addresses

DAEMON_SOURCE = "mlpipeline"


class _LockedAppender:
    """Appends whole texts to one file, each under the file's lock in one write. The file stays
    open between appends (opening it per line cost more than the line); a file deleted or
    replaced since (logrotate, a careless rm) is opened anew, so appends never go to a file
    no one can see."""

    def __init__(self, path: Path, read_back: bool) -> None:
        self.path = path
        # A file read back must be a regular file; the log and output may be a device.
        self._opener = regular_file_opener if read_back else appended_file_opener
        self._thread_lock = threading.Lock()
        self._file_lock = FileLock(str(OutputPaths.lock_for(path)))
        self._fd: Optional[int] = None

    def append(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")  # a path of bytes that are not UTF-8: escaped, the file stays UTF-8
        with naming_file(self.path), self._thread_lock, self._file_lock:
            try:
                fd = self._current_fd()
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except BaseException:
                self.close()
                raise

    def _current_fd(self) -> int:
        if self._fd is not None:
            try:
                on_disk, held = os.stat(self.path), os.fstat(self._fd)
                if (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino):
                    return self._fd
            except FileNotFoundError:
                pass
            self.close()
        self._fd = self._opener(str(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


class RunLog:
    """log-<host>: ``<ISO time> <LEVEL> <script:version> <message>``, one event a line.

    Made with ``path=None`` (``-n``) it writes nothing.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self._appender = _LockedAppender(path, read_back=False) if path is not None else None

    def write(self, level: str, source: str, message: str) -> None:
        self.write_lines(level, source, str(message).splitlines() or [""])

    def write_lines(self, level: str, source: str, lines: Sequence[str]) -> None:
        """Lines of one source at one moment (what one read of a child's output brought), in
        one append: one time stamp, one lock, one write."""
        if self._appender is None or not lines:
            return
        level = level.strip().upper()
        if not level.isalpha():
            level = "INFO"  # a level a script made up must not break the line's columns
        head = f"{now_iso()} {level} {source} "
        self._appender.append("".join(f"{head}{line}\n" for line in plain_lines(lines)))

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()


class OutputFile:
    """output-<host>: one readable block for each version that ended."""

    def __init__(self, path: Optional[Path]) -> None:
        self._appender = _LockedAppender(path, read_back=False) if path is not None else None

    def write(self, record: Dict[str, Any]) -> None:
        if self._appender is not None:
            self._appender.append(format_output_block(record))


class ResultsFile:
    """results.jsonl: the record of each version that ended, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self._appender = _LockedAppender(path, read_back=True)

    def write(self, record: Dict[str, Any]) -> None:
        self._appender.append(json_text(record, ensure_ascii=False) + "\n")


def _format_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return one_line(json_text(value, ensure_ascii=False))  # JSON escapes C0 controls, not C1
    return one_line(str(value))


def format_output_block(record: Dict[str, Any]) -> str:
    """A version's record as a block a person reads in output-<host>."""
    lines = [
        "=" * 72,
        one_line(f"{record['script']}:{record['version']}    {record['status'].upper()}"),
        f"ended:          {record['time']} on {record['host']}",
        f"script sha256:  {record.get('sha256') or 'unknown'}",
    ]
    if record.get("run_id"):
        lines.append(f"run:            run {record['run_id']}, attempt {record.get('attempt', 1)}")
    if record.get("reason"):
        reason = visible_lines(without_addresses(str(record["reason"])))  # an escape code shown, not obeyed
        lines.append("reason:         " + reason.replace("\n", "\n" + " " * 16))
    if isinstance(record.get("traceback"), str):
        lines.append("traceback:      " + visible_lines(record["traceback"]).replace("\n", "\n" + " " * 16))
    for label, key in (("eval on train", "eval_train"), ("eval on test", "eval_test"), ("last metrics", "metrics")):
        if record.get(key) is not None:
            lines.append(f"{label + ':':<16}{_format_value(record[key])}")
    steps = record.get("steps")
    early = record.get("early_stopping") if isinstance(record.get("early_stopping"), dict) else {}
    if record.get("status") == "stopped" and early.get("step") is not None:
        lines.append(one_line(f"steps:          stopped at step {early['step']} of {steps.get('total') if isinstance(steps, dict) else 'unknown'}"))
    elif isinstance(steps, dict) and steps:
        already = steps.get("already_trained")
        resumed = f", {already} trained before" if already else ""
        trained = steps.get("trained")
        lines.append(f"steps:          {'unknown' if trained is None else trained} of {steps.get('total')}{resumed}")
    if record.get("status") == "paused" and early.get("rung") is not None:
        lines.append(one_line(f"early stopping: paused at rung {early['rung']} (step {early.get('step')}), {early.get('metric')}={early.get('value')}"))
    if record.get("continued_from") is not None:
        lines.append(
            f"continued:      from step {record['continued_from']}, not fresh: its model_dir still held a checkpoint"
        )
    if record.get("epochs") is not None:
        lines.append(f"epochs:         {record['epochs']}")
    lines.append(f"duration:       {record['duration_s']:.2f} s wall, {record.get('cpu_s') or 0:.2f} s CPU")
    if record.get("peak_memory_mb") is not None:
        lines.append(f"peak memory:    {record['peak_memory_mb']:.1f} MiB (resident, whole process tree)")
    if record.get("gpu_peak_memory_mb") is not None:
        busy = f", its GPUs {record['gpu_utilization']:.0f}% busy on average" if record.get("gpu_utilization") is not None else ""
        lines.append(f"GPU memory:     {record['gpu_peak_memory_mb']:.1f} MiB at most (whole process tree){busy}")
    if record.get("signal") or record.get("exit_code") not in (None, 0):
        ending = f"signal {record['signal']}" if record.get("signal") else f"exit status {record['exit_code']}"
        lines.append(f"process ended:  {ending}")
    if record.get("model_dir"):
        lines.append(f"model_dir:      {one_line(str(record['model_dir']))}")
    commit = describe_git(record.get("git"))
    if commit:
        lines.append(f"git commit:     {commit}")
    data = describe_dvc(record.get("dvc"))
    if data:
        lines.append(f"dvc data:       {data}")
    parameters = record.get("parameters") or {}
    if parameters:
        lines.append("parameters:")
        lines.extend(f"  {one_line(key)}: {_format_value(value)}" for key, value in sorted(parameters.items()))
    for label, key in (("model summary", "model_summary"), ("dataloader summary", "dataloader_summary")):
        text = (record.get(key) or "").rstrip()
        if text:
            lines.append(f"{label}:")
            lines.extend(f"  {plain_text(without_addresses(line))}" for line in text.splitlines())
    # Whatever else came from a script or a file (a dvc path, a metric's name): no control code.
    return visible_lines("\n".join(lines)) + "\n\n"
