"""What running children say: their output lines, log messages and ``report()`` progress,
passed on to log-<host>, the console and the progress files ``mlpipeline status`` reads."""
from __future__ import annotations

import time
from typing import Any, Dict

from mlpipeline.execution.outcome import VersionRun
from mlpipeline.execution.reporter import Reporter
from mlpipeline.records.files import now_iso, remove_quietly, write_json_atomic
from mlpipeline.records.journal import Journal
from mlpipeline.records.paths import OutputPaths
from mlpipeline.watch.console import describe_report

REPORT_LOG_INTERVAL_S = 10.0
"""At most one log line per version per this many seconds from ``Model.report()``."""

PROGRESS_FILE_INTERVAL_S = 1.0
"""At most one rewrite per version per this many seconds of its progress file for ``status``."""


class ChildListener:
    """Takes each line and event of a running child; owns the progress files."""

    def __init__(self, reporter: Reporter, paths: OutputPaths) -> None:
        self._say = reporter
        self._progress = paths.progress

    def line(self, label: str, stream: str, line: str) -> None:
        """A line a version printed."""
        self._say.log("OUT" if stream == "stdout" else "ERR", label, line)
        self._say.view.child_line(label, line)

    def event(self, version_run: VersionRun, event: Dict[str, Any]) -> None:
        """A ``log`` or ``report`` event a version sent."""
        label = version_run.planned.label
        if event.get("type") == "log":
            self._say.log(str(event.get("level", "INFO")), label, str(event.get("message", "")))
            self._say.view.child_line(label, str(event.get("message", "")))
        elif event.get("type") == "report":
            metrics = event.get("metrics") or {}
            step, total = event.get("step"), event.get("total")
            version_run.metrics.update(metrics)
            self._say.view.progress(label, step, total, metrics)
            now = time.monotonic()
            if now - version_run.last_report_logged >= REPORT_LOG_INTERVAL_S:
                version_run.last_report_logged = now
                self._say.log("INFO", label, describe_report(step, total, metrics))
            if now - version_run.last_progress_written >= PROGRESS_FILE_INTERVAL_S:
                version_run.last_progress_written = now
                self._write_progress(version_run, step, total)

    def listing_line(self, script: str, stream: str, line: str) -> None:
        """A line a script printed while its versions were listed: the log only."""
        self._say.log("OUT" if stream == "stdout" else "ERR", script, line)

    def listing_event(self, script: str, event: Dict[str, Any]) -> None:
        if event.get("type") == "log":
            self._say.log(str(event.get("level", "INFO")), script, str(event.get("message", "")))

    def ended(self, version_run: VersionRun) -> None:
        """The version ended: its progress goes from the console and from ``status``."""
        self._say.view.progress_ended(version_run.planned.label)
        remove_quietly(self._progress / f"{version_run.run_id}.json")

    def drop_old_progress(self, journal: Journal) -> None:
        """Progress files of runs no daemon runs any more (cut off before they could remove theirs)."""
        running = {record.get("run_id") for record in journal.unfinished()}
        for path in self._progress.glob("*.json"):
            if path.stem not in running:
                remove_quietly(path)

    def _write_progress(self, version_run: VersionRun, step: Any, total: Any) -> None:
        progress = {"time": now_iso(), "step": step, "total": total, "metrics": version_run.metrics}
        try:
            self._progress.mkdir(exist_ok=True)
            write_json_atomic(self._progress / f"{version_run.run_id}.json", progress, durable=False)
        except OSError:
            pass  # a view for `mlpipeline status`; the records never depend on it
