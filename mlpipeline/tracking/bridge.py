"""The daemon's side of tracking: what happens to a version (it started, it reported, it
ended) is queued and handed to the tracker by one thread, so a slow tracker never slows the
daemon or a version. A tracker that fails is reported once for the run, and the run goes on
without it: the records under outputs/ are the truth, a tracker a view of them."""
from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from mlpipeline.records.files import write_json_atomic
from mlpipeline.records.lines import read_object
from mlpipeline.records.run_record import PARAMETERS_FILE, RUN_FILE, record_dir

TRACKING_FILE = "tracking.json"
"""In <model_dir>/.mlpipeline/: the tracker's run id, so that a resumed version goes on in it."""

BATCH_S = 1.0
"""Reports are handed to the tracker in batches at most this far apart."""


class TrackedRun:
    """What a tracker needs of one run of a version."""

    def __init__(self, script: str, version: str, run_id: str, model_dir: str, resumed: bool, git: Optional[Dict[str, Any]]) -> None:
        self.script = script
        self.version = version
        self.run_id = run_id
        self.model_dir = Path(model_dir)
        self.resumed = resumed
        self.git = git

    def parameters(self, record: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The version's parameters: from its results.jsonl ``record`` once it ended, else as
        its process wrote them. Empty before it did, and while the folder's run record is
        another run's: versions sharing a model_dir run one after another, and the tracker's
        thread may be behind them."""
        if record is not None and isinstance(record.get("parameters"), dict):
            return record["parameters"]
        folder = record_dir(self.model_dir)
        if not self._record_is_this_runs(folder):
            return {}
        parameters = read_object(folder / PARAMETERS_FILE) or {}
        return parameters if self._record_is_this_runs(folder) else {}  # not replaced meanwhile

    def _record_is_this_runs(self, folder: Path) -> bool:
        record = read_object(folder / RUN_FILE)
        return record is not None and record.get("run_id") == self.run_id

    def script_copy(self) -> Optional[Path]:
        """The exact script the run imported, from the run record."""
        copy = record_dir(self.model_dir) / Path(self.script).name
        return copy if copy.is_file() else None

    def earlier(self) -> Dict[str, Any]:
        """What the tracker kept of the run this one resumes, if it resumes one."""
        if not self.resumed:
            return {}
        found = self._kept().get(self.version)
        return found if isinstance(found, dict) else {}

    def remember(self, data: Dict[str, Any]) -> None:
        """Keep ``data`` for a resume of this version; written only when the file does not hold
        it. Keyed by version: versions may share a model_dir, one after the other."""
        kept = self._kept()
        if kept.get(self.version) == data:
            return
        kept[self.version] = data
        folder = record_dir(self.model_dir)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / TRACKING_FILE, kept)

    def _kept(self) -> Dict[str, Any]:
        return read_object(record_dir(self.model_dir) / TRACKING_FILE) or {}


def final_step(record: Dict[str, Any]) -> int:
    """The model's total steps from a results.jsonl row: where its evaluations are placed."""
    steps = record.get("steps")
    total = steps.get("total") if isinstance(steps, dict) else None
    return total if isinstance(total, int) else 0


def evaluations(record: Dict[str, Any], separator: str) -> Dict[str, float]:
    """The numbers among a row's evaluations, as ``eval_test<separator>accuracy``."""
    found: Dict[str, float] = {}
    for side in ("eval_train", "eval_test"):
        value = record.get(side)
        items = value if isinstance(value, dict) else {} if value is None else {"": value}
        for key, item in items.items():
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                found[f"{side}{separator}{key}" if key else side] = float(item)
    return found


class Tracker:
    """A tracker backend; every call runs on the bridge's thread."""

    name = "tracker"

    def start(self, run: TrackedRun) -> None:
        raise NotImplementedError

    def metrics(self, run: TrackedRun, reports: List[Tuple[float, Any, Dict[str, float]]]) -> None:
        """Reports as (unix time, step, {name: number})."""
        raise NotImplementedError

    def end(self, run: TrackedRun, record: Dict[str, Any]) -> None:
        """The run ended; ``record`` is its results.jsonl row."""
        raise NotImplementedError

    def close(self) -> None:
        pass


MAX_QUEUED = 100_000
"""Reports waiting for a tracker that cannot keep up; beyond this they are dropped, said once."""


class TrackingBridge:
    """Queues what happens to versions for ``tracker``, on a thread of its own.

    A run whose start failed is not tracked further. Any other failed call is said once per
    run, and the run's later calls (its end included, so it is not left running in the
    tracker) are still tried.
    """

    def __init__(self, tracker: Tracker, warn: Callable[[str, str], None]) -> None:
        self._tracker = tracker
        self._warn = warn
        self._queue: "queue.Queue[Optional[Tuple[str, TrackedRun, Any]]]" = queue.Queue()
        self._untracked: set = set()  # runs whose start failed
        self._warned: set = set()
        self._dropped = 0
        self._thread = threading.Thread(target=self._work, name="mlpipeline-tracking", daemon=True)
        self._thread.start()

    def started(self, run: TrackedRun) -> None:
        self._queue.put(("start", run, None))

    def reported(self, run: TrackedRun, step: Any, metrics: Dict[str, Any]) -> None:
        numbers = {}
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    continue
                if math.isfinite(value):
                    numbers[name] = value
        if not numbers:
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self._dropped += 1
            if self._dropped == 1:
                self._warn(f"{run.script}:{run.version}", f"{self._tracker.name} falls behind: reports beyond {MAX_QUEUED:,} waiting are dropped (the metric history keeps them all)")
            return
        self._queue.put(("report", run, (time.time(), step, numbers)))

    def ended(self, run: TrackedRun, record: Dict[str, Any]) -> None:
        self._queue.put(("end", run, record))

    def close(self, timeout: float = 30.0) -> None:
        """Hand over what is queued, then stop (at most ``timeout`` seconds)."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._warn("tracking", f"{self._tracker.name} did not take {self._queue.qsize()} queued items within {timeout:g} s; they are not tracked (the records under outputs/ have them)")

    def _work(self) -> None:
        pending: Dict[str, Tuple[TrackedRun, List[Tuple[float, Any, Dict[str, float]]]]] = {}
        last_batch = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=BATCH_S)
            except queue.Empty:
                item = ("tick", None, None)
            if item is None:
                self._send(pending)
                self._call(None, self._tracker.close)
                return
            kind, run, data = item
            if kind == "report":
                pending.setdefault(run.run_id, (run, []))[1].append(data)
            elif kind == "start":
                if not self._call(run, self._tracker.start, run):
                    self._untracked.add(run.run_id)
            elif kind == "end":
                self._send({key: value for key, value in pending.items() if key == run.run_id})
                pending.pop(run.run_id, None)
                self._call(run, self._tracker.end, run, data)
            if time.monotonic() - last_batch >= BATCH_S:
                self._send(pending)
                pending = {}
                last_batch = time.monotonic()

    def _send(self, pending: Dict[str, Tuple[TrackedRun, List[Tuple[float, Any, Dict[str, float]]]]]) -> None:
        for run, reports in pending.values():
            if reports:
                self._call(run, self._tracker.metrics, run, reports)

    def _call(self, run: Optional[TrackedRun], function: Callable[..., None], *args: Any) -> bool:
        if run is not None and run.run_id in self._untracked:
            return False
        try:
            function(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - a tracker's failure never reaches the queue
            key = run.run_id if run is not None else None
            if key not in self._warned:
                self._warned.add(key)
                label = f"{run.script}:{run.version}" if run is not None else "tracking"
                self._warn(label, f"{self._tracker.name} tracking failed ({type(exc).__name__}: {exc}); the run goes on, its records complete")
            return False
