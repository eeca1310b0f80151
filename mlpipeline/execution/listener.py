"""What running children say: their output lines, log messages and ``report()`` progress,
passed on to log-<host>, the console, the progress files ``mlpipeline status`` reads, each
model's metric history, and the tracker mlp.config names (MLflow, TensorBoard)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from mlpipeline.execution.framework_noise import without_noise
from mlpipeline.execution.outcome import VersionRun
from mlpipeline.execution.plan import PlannedRun, Start
from mlpipeline.execution.reporter import Reporter
from mlpipeline.executors.protocol import STEPS_EVENT, TRAINED_EVENT
from mlpipeline.records.files import now_iso, remove_quietly, write_json_atomic
from mlpipeline.records.journal import Journal
from mlpipeline.execution.early_stopping import finite, rung_step
from mlpipeline.queue.config import EarlyStoppingSettings
from mlpipeline.records.metric_history import FLUSH_INTERVAL_S, HistoryWriter, history_path, read_history_file, set_aside
from mlpipeline.tracking.bridge import TrackedRun, TrackingBridge
from mlpipeline.records.paths import OutputPaths
from mlpipeline.watch.compare import keep_best
from mlpipeline.watch.console import describe_report

REPORT_LOG_INTERVAL_S = 10.0
"""At most one log line per version per this many seconds from ``Model.report()``."""

PROGRESS_FILE_INTERVAL_S = 1.0
"""At most one rewrite per version per this many seconds of its progress file for ``status``."""


class ChildListener:
    """Takes each line and event of a running child; owns the progress files."""

    def __init__(
        self,
        reporter: Reporter,
        paths: OutputPaths,
        tracking: Optional[TrackingBridge] = None,
        early_stopping: Optional[EarlyStoppingSettings] = None,
    ) -> None:
        self._say = reporter
        self._early_stopping = early_stopping
        self._progress = paths.progress
        self._tracking = tracking
        self._tracked: Dict[str, TrackedRun] = {}
        self._histories: Dict[str, HistoryWriter] = {}
        self._closed_histories: Set[str] = set()  # runs that ended: a straggling event writes nothing
        self._histories_lock = threading.Lock()
        # Reports reach the file within a second whatever the loop is doing (it may be
        # listing a slow script for minutes).
        self._stop_flushing = threading.Event()
        threading.Thread(target=self._flush_every_second, name="mlpipeline-history", daemon=True).start()

    def lines(self, label: str, stream: str, lines: List[str]) -> None:
        """Lines a version printed, read together."""
        lines = without_noise(lines)
        self._say.log_lines("OUT" if stream == "stdout" else "ERR", label, lines)
        self._say.view.child_lines(label, lines)

    def event(self, version_run: VersionRun, event: Dict[str, Any]) -> None:
        """A ``log`` or ``report`` event a version sent."""
        label = version_run.planned.label
        if event.get("type") == "log":
            self._say.log(str(event.get("level", "INFO")), label, str(event.get("message", "")))
            self._say.view.child_line(label, str(event.get("message", "")))
        elif event.get("type") == TRAINED_EVENT:
            version_run.train_returned = True
        elif event.get("type") == STEPS_EVENT and isinstance(event.get("steps"), dict):
            self._steps_planned(version_run, event["steps"], bool(event.get("continued")), bool(event.get("cleaned")))
        elif event.get("type") == "report":
            metrics = event.get("metrics") or {}
            step, total = event.get("step"), event.get("total")
            if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
                version_run.last_step = step  # a negative step trained nothing: steps trained stay unknown
                version_run.last_total = total
            history = self._history(version_run)
            place = history.add(step, total, metrics) if history is not None else None
            tracked = self._tracked.get(version_run.run_id)
            if tracked is not None and self._tracking is not None:
                # A report without a step is placed as plot places it: at its place in the history.
                at = step if isinstance(step, (int, float)) and not isinstance(step, bool) else place
                self._tracking.reported(tracked, at, metrics)
            version_run.metrics.update(metrics)
            if isinstance(metrics, dict):
                version_run.reported = True
                keep_best(version_run.best, metrics)
                if version_run.planned.watched and self._early_stopping is not None and isinstance(step, int):
                    self._note_crossings(version_run, step, metrics)
            self._say.view.progress(label, step, total, metrics)
            now = time.monotonic()
            if now - version_run.last_report_logged >= REPORT_LOG_INTERVAL_S:
                version_run.last_report_logged = now
                self._say.log("INFO", label, describe_report(step, total, metrics))
            if now - version_run.last_progress_written >= PROGRESS_FILE_INTERVAL_S:
                version_run.last_progress_written = now
                self._write_progress(version_run, step, total)

    def _steps_planned(self, version_run: VersionRun, steps: Dict[str, Any], continued: bool, cleaned: bool = False) -> None:
        version_run.steps = steps
        already = steps.get("already_trained")
        label = version_run.planned.label
        if version_run.planned.start is Start.RESUME and already is None and steps.get("trained"):
            # Said as a fresh run that continues is said: "resuming" alone would hide that the
            # steps its cut-off run trained are trained again.
            planned, total = steps.get("trained"), steps.get("total")
            which = f"all {planned} steps" if planned == total else f"{planned} of its {total} steps (to its rung)"
            message = (
                f"resuming, but its model says no steps are trained yet (get_trained_step_count() returned None): "
                f"{which} train from the start"
            )
            self._say.log("WARNING", label, message)
            self._say.view.warning(f"{label} {message}")
            return
        if not continued or not isinstance(already, int) or isinstance(already, bool) or version_run.planned.start is not Start.FRESH:
            return
        version_run.continued_from = already
        left = "nothing left to train" if not steps.get("trained") else f"{steps.get('trained')} steps to go"
        why = (
            "its model's clean_model_dir left the checkpoint in its model_dir (the base deletes nothing: override it)"
            if cleaned
            else "its model_dir was not cleaned, since its model's allow_delete_model_dir is False"
        )
        message = f"continuing from step {already}, not fresh ({left}): {why}; to start over, see docs/modes.md (\"Starting over\")"
        self._say.log("WARNING", label, message)
        self._say.view.warning(f"{label} {message}")

    def listing_lines(self, script: str, stream: str, lines: List[str]) -> None:
        """Lines a script printed while its versions were listed (its import): the log, and the
        console as test mode shows them, where an import that fails says why (argparse's
        "the following arguments are required", a script's own "no GPU found")."""
        lines = without_noise(lines)
        self._say.log_lines("OUT" if stream == "stdout" else "ERR", script, lines)
        self._say.view.child_lines(script, lines)

    def listing_event(self, script: str, event: Dict[str, Any]) -> None:
        if event.get("type") == "log":
            self._say.log(str(event.get("level", "INFO")), script, str(event.get("message", "")))

    def _note_crossings(self, version_run: VersionRun, step: int, metrics: Dict[str, Any]) -> None:
        """A watched version's value as its reports pass each rung, kept for the rung watch
        (the loop looks only every 0.2 s, and a version may be steps past the rung by then)."""
        assert self._early_stopping is not None
        rung = len(version_run.rungs)
        while rung in version_run.crossings:
            rung += 1
        while step >= rung_step(self._early_stopping, rung):
            version_run.crossings[rung] = finite(metrics.get(self._early_stopping.metric))
            rung += 1

    def started(self, version_run: VersionRun) -> None:
        """A version's child is about to start: a fresh run's history starts anew, and its
        tracker run begins (or goes on, when it resumes)."""
        planned = version_run.planned
        if planned.start is Start.FRESH:
            try:
                set_aside(version_run.model_dir, version_run.run_id)
            except OSError as exc:
                self._say.log("WARNING", planned.label, f"its earlier metric history could not be set aside ({exc.strerror or exc})")
        else:
            # A resumed run's best is over the model's whole curve, the runs it resumed included;
            # its last values are where a run that trains nothing more stands (early stopping).
            for report in read_history_file(history_path(Path(version_run.model_dir))):
                keep_best(version_run.best, report["metrics"])
                version_run.history_last.update(report["metrics"])
                version_run.history_last_steps.update(dict.fromkeys(report["metrics"], report.get("step")))
        if self._tracking is None:
            return
        tracked = TrackedRun(
            planned.script.label,
            planned.version,
            version_run.run_id,
            version_run.model_dir,
            resumed=planned.start is Start.RESUME,
            git=version_run.git,
        )
        self._tracked[version_run.run_id] = tracked
        self._tracking.started(tracked)

    def ended(self, version_run: VersionRun, record: Optional[Dict[str, Any]] = None) -> None:
        """The version ended: its history is written out, its tracker run ends with ``record``
        (its results.jsonl row; None when another daemon took it over), and its progress goes
        from the console and ``status``."""
        tracked = self._tracked.pop(version_run.run_id, None)
        if tracked is not None and self._tracking is not None and record is not None:
            self._tracking.ended(tracked, record)
        with self._histories_lock:
            history = self._histories.pop(version_run.run_id, None)
            self._closed_histories.add(version_run.run_id)
        if history is not None:
            history.close()
        self._say.view.progress_ended(version_run.planned.label)
        remove_quietly(self._progress / f"{version_run.run_id}.json")

    def lost(self, version_run: VersionRun) -> None:
        """The version's claim went to another daemon: the reports of this run not written
        yet are dropped (they would land after the new run's), and it ends as ``ended`` says."""
        with self._histories_lock:
            history = self._histories.pop(version_run.run_id, None)
            self._closed_histories.add(version_run.run_id)
        if history is not None:
            history.discard()
        self.ended(version_run)

    def decided(self, planned: PlannedRun, run_id: str, model_dir: str, record: Dict[str, Any]) -> None:
        """A decision recorded for a version that runs nowhere (early stopping stopped it at
        the rung it paused at): its tracker run, which the pause left waiting, ends with
        ``record``, as a run of its own that trained nothing."""
        if self._tracking is None:
            return
        tracked = TrackedRun(planned.script.label, planned.version, run_id, model_dir, resumed=True, git=None)
        self._tracking.started(tracked)
        self._tracking.ended(tracked, record)

    def flush_histories(self) -> None:
        """Write out the reports that have waited a second."""
        with self._histories_lock:
            histories = list(self._histories.values())
        for history in histories:
            history.flush_if_due()

    def close(self) -> None:
        """Stop the history thread (the runs' own ends have written theirs out)."""
        self._stop_flushing.set()

    def _flush_every_second(self) -> None:
        while not self._stop_flushing.wait(FLUSH_INTERVAL_S / 4):
            self.flush_histories()

    def _history(self, version_run: VersionRun) -> Optional[HistoryWriter]:
        with self._histories_lock:
            history = self._histories.get(version_run.run_id)
            if history is None and version_run.run_id not in self._closed_histories:
                label = version_run.planned.label
                history = HistoryWriter(
                    version_run.model_dir, version_run.run_id, on_error=lambda message: self._say.log("WARNING", label, message)
                )
                self._histories[version_run.run_id] = history
            return history

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
