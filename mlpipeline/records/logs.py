"""The files people and tools read: log-<host>, output-<host> and results.jsonl.

All three are appended under a file lock, one flush per write, with terminal escape codes
stripped, so ``tail -f`` is live and several daemons never interleave within a line.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Dict, Optional

from filelock import FileLock

from mlpipeline.records.files import json_text, naming_file, now_iso
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.provenance import describe_git

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

DAEMON_SOURCE = "mlpipeline"


def plain_text(line: str) -> str:
    """``line`` without escape codes; of carriage-return redraws (progress bars) the last one."""
    line = _ESCAPES.sub("", line)
    if "\r" in line:
        parts = [part for part in line.split("\r") if part.strip()]
        line = parts[-1] if parts else ""
    return _CONTROL.sub("", line)


class _LockedAppender:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._file_lock = FileLock(str(OutputPaths.lock_for(path)))

    def append(self, text: str) -> None:
        with naming_file(self.path), self._thread_lock, self._file_lock:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()


class RunLog:
    """log-<host>: ``<ISO time> <LEVEL> <script:version> <message>``, one event a line.

    Made with ``path=None`` (``-n``) it writes nothing.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self._appender = _LockedAppender(path) if path is not None else None

    def write(self, level: str, source: str, message: str) -> None:
        if self._appender is None:
            return
        level = level.strip().upper()
        if not level.isalpha():
            level = "INFO"  # a level a script made up must not break the line's columns
        stamp = now_iso()
        lines = [plain_text(line) for line in str(message).splitlines()] or [""]
        self._appender.append("".join(f"{stamp} {level} {source} {line}\n" for line in lines))


class OutputFile:
    """output-<host>: one readable block for each version that ended."""

    def __init__(self, path: Optional[Path]) -> None:
        self._appender = _LockedAppender(path) if path is not None else None

    def write(self, record: Dict[str, Any]) -> None:
        if self._appender is not None:
            self._appender.append(format_output_block(record))


class ResultsFile:
    """results.jsonl: the record of each version that ended, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self._appender = _LockedAppender(path)

    def write(self, record: Dict[str, Any]) -> None:
        self._appender.append(json_text(record, ensure_ascii=False) + "\n")


def _format_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json_text(value, ensure_ascii=False)
    return str(value)


def format_output_block(record: Dict[str, Any]) -> str:
    """A version's record as a block a person reads in output-<host>."""
    lines = [
        "=" * 72,
        f"{record['script']}:{record['version']}    {record['status'].upper()}",
        f"ended:          {record['time']} on {record['host']}",
        f"script sha256:  {record.get('sha256') or 'unknown'}",
    ]
    if record.get("run_id"):
        lines.append(f"run:            run {record['run_id']}, attempt {record.get('attempt', 1)}")
    if record.get("reason"):
        lines.append(f"reason:         {plain_text(record['reason'])}")
    for label, key in (("eval on train", "eval_train"), ("eval on test", "eval_test"), ("last metrics", "metrics")):
        if record.get(key) is not None:
            lines.append(f"{label + ':':<16}{_format_value(record[key])}")
    steps = record.get("steps")
    if steps:
        already = steps.get("already_trained")
        resumed = f", {already} trained before" if already else ""
        lines.append(f"steps:          {steps['trained']} of {steps['total']}{resumed}")
    if record.get("epochs") is not None:
        lines.append(f"epochs:         {record['epochs']}")
    lines.append(f"duration:       {record['duration_s']:.2f} s wall, {record.get('cpu_s') or 0:.2f} s CPU")
    if record.get("peak_memory_mb") is not None:
        lines.append(f"peak memory:    {record['peak_memory_mb']:.1f} MiB (resident, whole process tree)")
    if record.get("signal") or record.get("exit_code") not in (None, 0):
        ending = f"signal {record['signal']}" if record.get("signal") else f"exit status {record['exit_code']}"
        lines.append(f"process ended:  {ending}")
    if record.get("model_dir"):
        lines.append(f"model_dir:      {record['model_dir']}")
    commit = describe_git(record.get("git"))
    if commit:
        lines.append(f"git commit:     {commit}")
    parameters = record.get("parameters") or {}
    if parameters:
        lines.append("parameters:")
        lines.extend(f"  {key}: {_format_value(value)}" for key, value in sorted(parameters.items()))
    for label, key in (("model summary", "model_summary"), ("dataloader summary", "dataloader_summary")):
        text = (record.get(key) or "").rstrip()
        if text:
            lines.append(f"{label}:")
            lines.extend(f"  {plain_text(line)}" for line in text.splitlines())
    return "\n".join(lines) + "\n\n"
