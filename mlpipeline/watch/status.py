"""``mlpipeline status``: where every queued version stands.

Read from the journal, the current models.config and the scripts as they are now, without
taking any lock, so a running daemon is never held up, and without writing anything.
Versions come from the listings the daemon keeps under ``outputs/.listings/``; a script no
daemon has listed is listed by a child here, as the daemon would.
"""
from __future__ import annotations

import math
import signal
import sys
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any, Dict, List, Optional

from mlpipeline.executors.local import LocalExecutor
from mlpipeline.executors.protocol import describe_node
from mlpipeline.queue.catalog import Fingerprints, ListingStore, ScriptCatalog, refused_message
from mlpipeline.queue.config import EXECUTION_QUEUE, ProjectConfig, read_queue_config
from mlpipeline.queue.queue_file import QueuedScript, resolve_queue
from mlpipeline.records.files import json_encoder, number
from mlpipeline.records.heartbeat import seems_alive
from mlpipeline.records.identity import DaemonIdentity, hostname, process_namespace
from mlpipeline.records.journal import Journal, state_of
from mlpipeline.records.lines import read_object
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.control import ControlReader, paused_by
from mlpipeline.records.states import RunState
from mlpipeline.watch.console import ConsoleView, describe_report

STALE = "stale"
BROKEN = "broken"

@dataclass
class VersionStatus:
    """One row of ``mlpipeline status`` (and one object of ``--json``)."""

    script: str
    version: Optional[str]
    state: str  # pending, waiting (in a cluster's queue), running, paused, finished, stopped, failed, interrupted, timed_out, stale, broken
    queued: bool = True
    host: Optional[str] = None
    pid: Optional[int] = None  # the daemon's
    child_pid: Optional[int] = None  # the version's own process, while it runs
    node: Optional[Dict[str, Any]] = None  # the Ray node (node_id, node_ip, node_host) or Slurm job (slurm_job, slurm_node) it runs on
    since: Optional[str] = None  # when the running version started
    ended_at: Optional[str] = None
    duration_s: Optional[float] = None
    metrics: Optional[Dict[str, Any]] = None
    eval_test: Any = None
    progress: Optional[Dict[str, Any]] = None
    reason: Optional[str] = None
    previous_state: Optional[str] = None  # for stale: how the run of the old script content ended
    run_id: Optional[str] = None
    attempt: Optional[int] = None
    sha256: Optional[str] = None
    rung: Optional[int] = None  # paused or stopped by early stopping: at which rung
    step: Optional[int] = None  # ... and at which step

    @property
    def label(self) -> str:
        return self.script if self.version is None else f"{self.script}:{self.version}"


class StatusReader:
    """Builds the rows of ``mlpipeline status`` for one project."""

    def __init__(self, project: ProjectConfig) -> None:
        self.project = project
        self.paths = OutputPaths(project.outputs_dir, hostname())
        self.warnings: List[str] = []
        self.journal = Journal(self.paths.journal, warn=self.warnings.append)
        self._host = hostname()
        # Only for judging others: status is no daemon, but sees pids as a daemon here would.
        self._identity = DaemonIdentity(self._host, 0, 0.0, process_namespace(self._host), "")

    def rows(self) -> List[VersionStatus]:
        self.journal.read_without_lock()
        config = read_queue_config(self.project.project_dir / EXECUTION_QUEUE, EXECUTION_QUEUE, self.project.models_dir)
        scripts, missing = resolve_queue(config, self.project.models_dir, self.project.outputs_dir)
        self.warnings.extend(missing)
        executor = LocalExecutor(self.project.project_dir)
        catalog = ScriptCatalog(
            executor,
            on_lines=lambda *_: None,
            on_event=lambda *_: None,
            store=ListingStore(self.paths.listings, readable=True, writable=False),
            timeout=self.project.listing_timeout,
            models_dir=self.project.models_dir,
        )
        try:
            return self._rows(scripts, catalog)
        finally:
            # Ctrl-C while a script's versions are listed: its child, in a session of its own, goes too.
            executor.stop_all(signal.SIGKILL)

    def _rows(self, scripts: List[QueuedScript], catalog: ScriptCatalog) -> List[VersionStatus]:
        fingerprints = Fingerprints()
        rows: List[VersionStatus] = []
        seen = set()
        for script in scripts:
            try:
                sha256 = fingerprints.sha256(script.path)
            except OSError as exc:
                rows.append(VersionStatus(script.label, None, BROKEN, reason=f"cannot be read ({exc.strerror})"))
                continue
            listing = catalog.listing(script.path, script.label, sha256)
            if listing is None or listing.error is not None:
                reason = listing.error.message if listing and listing.error else "its versions could not be learned"
                rows.append(VersionStatus(script.label, None, BROKEN, reason=reason, sha256=sha256))
                continue
            fingerprint = fingerprints.of_versions(listing)
            for version in listing.names:
                if script.wants(version):
                    rows.append(self._version(script.label, version, fingerprint(version)))
                    seen.add((script.label, version))
            self.warnings.extend(
                refused_message(script.label, name, why) + " (not run)" for name, why in listing.refused.items() if script.wants(name)
            )
            for version, line in script.entry_lines:
                if version and version not in listing.names:
                    where = EXECUTION_QUEUE if line is None else f"{EXECUTION_QUEUE}:{line}"
                    self.warnings.append(f"{where}: {script.label} has no version '{version}'")
        # Versions running that the queue no longer names still run: they are shown too.
        for record in self.journal.unfinished():
            key = (record["script"], record["version"])
            if key not in seen:
                row = self._version(key[0], key[1], record.get("sha256"))
                if row.state == "running":
                    row.queued = False
                    rows.append(row)
        return rows

    def _version(self, script: str, version: str, sha256: Optional[str]) -> VersionStatus:
        row = VersionStatus(script, version, "pending", sha256=sha256)
        last = self.journal.latest(script, version)
        if last is None:
            return row
        row.run_id = last.get("run_id")
        row.attempt = last.get("attempt")
        state = state_of(last)
        if state is RunState.RUNNING:
            row.host, row.pid, row.since = last.get("host"), last.get("pid"), last.get("time")
            row.child_pid = last.get("child_pid")
            if "node_id" in last:
                row.node = {key: last.get(key) for key in ("node_id", "node_ip", "node_host")}
            elif "slurm_job" in last:
                row.node = {key: last.get(key) for key in ("slurm_job", "slurm_node", "node_host")}
            if self._alive(last):
                # Claimed, not yet started: on a cluster, waiting in its queue for a node.
                waiting = last.get("event") == "claimed" and self.project.executor != "local"
                row.state = "waiting" if waiting else "running"
                row.duration_s = _seconds_since(last.get("time"))
                row.progress = self._progress(row.run_id)
                if row.progress:
                    row.metrics = _mapping(row.progress.pop("metrics", None)) or None
                    for key in ("step", "total"):  # shown as "step 40/100"
                        if key in row.progress and not _a_number(row.progress[key]):
                            row.progress[key] = None
                return row
            row.state = "interrupted"
            row.reason = f"its daemon on {last.get('host')} (pid {last.get('pid')}) is gone; -u resumes it first"
            if "slurm_job" in last:
                # A Slurm job outlives its daemon: it may train on, and -u follows it, not starts it again.
                row.reason = (
                    f"its daemon on {last.get('host')} (pid {last.get('pid')}) is gone; its Slurm job {last.get('slurm_job')} "
                    "may still run (squeue --me): -u follows it to its end"
                )
            return row
        row.state = state.value
        row.host, row.pid = last.get("host"), last.get("pid")
        row.ended_at = last.get("time")
        # What is shown only is taken as far as it has its type: an edited journal crashes nothing.
        duration = number(last.get("duration_s"))
        row.duration_s = duration if duration is not None and 0 <= duration < math.inf else None
        row.metrics = _mapping(last.get("metrics"))
        row.eval_test = _mapping(last.get("eval_test"))
        row.reason = _text(last.get("reason"))
        if state in (RunState.PAUSED, RunState.STOPPED):
            rung, step = last.get("rung"), last.get("step")
            row.rung = rung if isinstance(rung, int) and not isinstance(rung, bool) else None
            row.step = step if isinstance(step, int) and not isinstance(step, bool) else None
        if sha256 is not None and last.get("sha256") != sha256 and self.project.on_script_change == "rerun":
            row.previous_state, row.state = row.state, STALE
            row.reason = "the script changed since this run; the version runs again from a clean model_dir"
        return row

    def _alive(self, record: Dict[str, Any]) -> bool:
        """Whether the daemon of a claim still runs: its pid where this process can see it, its
        heartbeat elsewhere (one look: a rewrite within 6 beats plus clock slack counts)."""
        return seems_alive(record, self._identity, self.paths.heartbeats)

    def _progress(self, run_id: Optional[str]) -> Optional[Dict[str, Any]]:
        if not run_id:
            return None
        return read_object(self.paths.progress / f"{run_id}.json")


def show_status(project: ProjectConfig, view: ConsoleView, as_json: bool = False) -> int:
    """Print the status of every queued version; returns the exit code (0)."""
    reader = StatusReader(project)
    rows = reader.rows()
    pause = paused_by(ControlReader(project.outputs_dir, reader.warnings.append).read_new())
    if pause is not None:
        reader.warnings.append(f"the queue is paused (`mlpipeline pause` on {pause.host} at {pause.time}); `mlpipeline resume` lets it go on")
    if as_json:
        # One object a line: readable, grep-able, and quick for 100,000 rows (dataclasses.asdict is not).
        fields = [f.name for f in dataclass_fields(VersionStatus)]
        encode = json_encoder(ensure_ascii=False)
        lines = [encode({name: getattr(row, name) for name in fields}) for row in rows]
        view.write_raw("[\n" + ",\n".join(lines) + ("\n]\n" if lines else "]\n"))
        for warning in reader.warnings:
            sys.stderr.write(f"warning: {warning}\n")
        return 1 if view.output_lost else 0
    view.status_table(
        [(row.label, row.state, _duration(row.duration_s), _metrics(row), _detail(row)) for row in rows],
        _counts(rows),
    )
    for warning in reader.warnings:
        view.warning(warning)
    return 1 if view.output_lost else 0


def _detail(row: VersionStatus) -> str:
    if row.state == "running":
        pids = f"pid {row.pid}" + (f", version pid {row.child_pid}" if row.child_pid else "")
        where = f"on {row.host}, {pids}, since {row.since}"
        if row.node and "slurm_job" in row.node:
            node = row.node.get("slurm_node") or row.node.get("node_host")
            where = f"Slurm job {row.node['slurm_job']} on node {node}, daemon on {row.host} ({pids}), since {row.since}"
        elif row.node:
            where = f"on node {describe_node(row.node)}, daemon on {row.host} ({pids}), since {row.since}"
        if row.progress and row.progress.get("step") is not None:
            total = row.progress.get("total")
            where = f"step {row.progress['step']}{'' if total is None else f'/{total}'}, " + where
        return where + ("" if row.queued else " (no longer queued)")
    if row.state == "waiting":
        return f"submitted by the daemon on {row.host} (pid {row.pid}) at {row.since}; waiting in the cluster's queue for a node"
    if row.state == STALE:
        return f"was {row.previous_state}, ended {row.ended_at}; its script or config files edited since"
    if row.state == "paused":
        where = f"at rung {row.rung} (step {row.step})" if row.rung is not None else "at a rung"
        return f"{where}, waiting to be promoted or stopped by early stopping"
    if row.state in ("failed", "interrupted", "timed_out", "cancelled", "stopped", BROKEN) and row.reason:
        lines = row.reason.splitlines() or [""]
        # A table's cell is one line: the rest is marked, not dropped unseen (--json has it whole).
        return lines[0] + (f" [{len(lines) - 1} more line{'s' if len(lines) > 2 else ''}: status --json]" if len(lines) > 1 else "")
    if row.state == "finished":
        return f"ended {row.ended_at} on {row.host}"
    return ""


def _metrics(row: VersionStatus) -> str:
    if row.metrics:
        return describe_report(None, None, row.metrics)
    if isinstance(row.eval_test, dict):
        return "test " + describe_report(None, None, row.eval_test)
    return ""


def _mapping(value: Any) -> Optional[Dict[str, Any]]:
    return value if isinstance(value, dict) else None


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _a_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _counts(rows: List[VersionStatus]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _seconds_since(stamp: Optional[str]) -> Optional[float]:
    if not stamp:
        return None
    try:
        return max((datetime.now().astimezone() - datetime.fromisoformat(stamp)).total_seconds(), 0.0)
    except (ValueError, TypeError):  # not a time, or one without its UTC offset
        return None

