"""Control of a running queue from the command line: ``mlpipeline cancel``, ``pause`` and
``resume`` append requests (records/control.py), and each daemon's ControlWatch applies
them. A cancel names the running versions to stop (the loop kills their trees; they are
recorded as cancelled, which -u neither resumes nor retries) and keeps this session from
starting the queued ones; a pause lets running versions finish and starts nothing new until a resume.
Requests are read every CONTROL_CHECK_INTERVAL_S, from any host sharing the folder."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mlpipeline.execution.outcome import RunPhase, VersionRun, cancelled_at_rest
from mlpipeline.execution.reporter import Reporter
from mlpipeline.executors.base import ChildRun
from mlpipeline.executors.local import LocalExecutor
from mlpipeline.queue.catalog import Fingerprints, ListingStore, ScriptCatalog
from mlpipeline.queue.config import EXECUTION_QUEUE, ConfigError, ProjectConfig, QueueEntry, parse_entry, read_queue_config
from mlpipeline.queue.queue_file import resolve_queue
from mlpipeline.records.control import (
    CANCEL,
    PAUSE,
    REQUEST_LINE_LIMIT,
    RESUME,
    ControlReader,
    ControlRequest,
    append_request,
    compact_if_grown,
    paused_by,
)
from mlpipeline.records.files import json_text
from mlpipeline.records.ends import RecordKeeper
from mlpipeline.records.heartbeat import seems_alive
from mlpipeline.records.identity import DaemonIdentity, hostname, process_namespace
from mlpipeline.records.journal import Journal
from mlpipeline.records.states import RunState
from mlpipeline.script_support.versions import SHOWN_NAME_LIMIT, name_problem, shown_name
from mlpipeline.watch.console import ConsoleView
from mlpipeline.records.paths import OutputPaths

CONTROL_CHECK_INTERVAL_S = 0.5


@dataclass
class ControlCheck:
    """What the control requests read in one check ask of the loop."""

    cancels: List[ControlRequest] = field(default_factory=list)  # not to start again in this session
    stops: List[Tuple[ChildRun, str]] = field(default_factory=list)  # running versions to stop, and why


class ControlWatch:
    """Reads cancel, pause and resume requests for this daemon's session; holds whether it is paused."""

    def __init__(self, paths: OutputPaths, reporter: Reporter) -> None:
        compact_if_grown(paths.outputs_dir)
        self._reader = ControlReader(paths.outputs_dir, reporter.warn)
        self._say = reporter
        self._checked = 0.0
        # A pause asked before this daemon started holds it too; earlier cancels were for
        # the sessions running then.
        earlier = self._reader.read_new()
        pause = paused_by(earlier)
        # Kept for the versions of dead daemons this one takes over: a cancel that reached a
        # daemon which died before it acted holds for its version still (cancel_since).
        self._cancels = [request for request in earlier if request.action == CANCEL]
        self.paused = pause is not None
        if pause is not None:
            self._say_paused(pause)

    def check(self, running: Iterable[ChildRun], force: bool = False) -> ControlCheck:
        """Apply pauses and resumes; returns the cancels and the runs of ``running`` they stop."""
        found = ControlCheck()
        now = time.monotonic()
        if not force and now - self._checked < CONTROL_CHECK_INTERVAL_S:
            return found
        self._checked = now
        requests = self._reader.read_new()
        runs = list(running) if requests else []
        for request in requests:
            if request.action == CANCEL:
                found.cancels.append(request)
                self._cancels.append(request)
                found.stops += self._cancel(request, runs, [run for run, _ in found.stops])
            elif request.action == PAUSE and not self.paused:
                self.paused = True
                self._say_paused(request)
            elif request.action == RESUME and self.paused:
                self.paused = False
                message = f"resumed by `mlpipeline resume` on {request.host} at {request.time}"
                self._say.daemon("INFO", message)
                self._say.view.info(message)
        return found

    def cancel_since(self, script: str, version: str, since: object) -> Optional[ControlRequest]:
        """The latest cancel read (before this daemon started too, as far as control.jsonl
        keeps them: ten minutes) that names ``script:version`` and was asked at ``since`` (an
        ISO 8601 time: a run's claim) or later; None when there is none, or ``since`` is no time."""
        start = _instant(since)
        if start is None:
            return None
        for request in reversed(self._cancels):
            asked = _instant(request.time)
            if request.matches(script, version) and asked is not None and asked >= start:
                return request
        return None

    def _say_paused(self, request: ControlRequest) -> None:
        message = (
            f"paused by `mlpipeline pause` on {request.host} at {request.time}: running versions finish, "
            "nothing new starts until `mlpipeline resume`"
        )
        self._say.daemon("INFO", message)
        self._say.view.warning(message)

    def _cancel(self, request: ControlRequest, running: List[ChildRun], stopping: List[ChildRun]) -> List[Tuple[ChildRun, str]]:
        stops: List[Tuple[ChildRun, str]] = []
        for run in running:
            version_run = run.tag
            if not isinstance(version_run, VersionRun) or version_run.phase is not RunPhase.RUNNING or run in stopping:
                continue
            planned = version_run.planned
            if request.matches(planned.script.label, planned.version):
                stops.append((run, f"cancelled by `mlpipeline cancel {request.target}` on {request.host} at {request.time}"))
        stopped = [run.tag.planned.label for run, _ in stops]
        what = f"stopping {', '.join(stopped)}" if stopped else "none of it runs here"
        message = f"cancel {request.target} (asked on {request.host}): {what}; not started again in this session"
        self._say.daemon("WARNING", message)
        self._say.view.warning(message)
        return stops


NOTHING_MATCHED = 2
"""The exit code of a cancel that names nothing to cancel, or a name that cannot be asked: a usage error."""


@dataclass
class _Target:
    """What one SCRIPT[:VERSION] of a cancel names: the versions of it the journal and the queue know."""

    entry: QueueEntry
    journal: List[str] = field(default_factory=list)  # the versions the journal has of it, in its order
    queued: List[str] = field(default_factory=list)  # the versions models.config queues of it
    listed: List[str] = field(default_factory=list)  # every version its script defines, where learned
    in_queue: bool = False  # models.config names the script

    def matched(self) -> bool:
        if self.entry.version is None:
            return self.in_queue or bool(self.journal)
        return self.entry.version in self.journal or self.entry.version in self.listed

    def nothing(self) -> str:
        """Why it matches nothing."""
        script, version = self.entry.script, self.entry.version
        if not self.in_queue and not self.journal:
            return f"{EXECUTION_QUEUE} does not queue {_shown(script)} and the journal never saw it"
        known = list(dict.fromkeys(self.listed + self.journal))
        shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "") if known else "none known"
        return f"{_shown(script)} has no version {_shown(version or '')} (its versions: {shown})"


def _shown(name: str) -> str:
    # Names come from the command line, checked for control characters already: only a long one is cut.
    return name if len(name) <= SHOWN_NAME_LIMIT else shown_name(name)


def _refused(item: str) -> Optional[str]:
    """Why the cancel of ``item`` cannot even be asked, or None."""
    problem = name_problem(item)
    if problem is not None:
        return f"cancel {shown_name(item)}: the name {problem}, which no script or version name holds"
    # The request line with room for its time, host and pid, as append_request writes it.
    size = len(json_text({"script": item, "version": item}).encode("utf-8")) + 1024
    if size > REQUEST_LINE_LIMIT:
        return f"cancel {shown_name(item)}: the name is too long for a request line (at most {REQUEST_LINE_LIMIT} bytes)"
    return None


def _targets(project: ProjectConfig, entries: Sequence[QueueEntry], journal: Journal, paths: OutputPaths, view: ConsoleView) -> List[_Target]:
    """What each entry names, from the journal and from the queue as models.config has it now."""
    targets = [_Target(entry) for entry in entries]
    for script, version in journal.versions():
        for target in targets:
            if target.entry.script == script and version not in target.journal:
                target.journal.append(version)
    try:
        config = read_queue_config(project.project_dir / EXECUTION_QUEUE, EXECUTION_QUEUE, project.models_dir)
        scripts, _ = resolve_queue(config, project.models_dir, project.outputs_dir)
    except ConfigError as exc:
        if (project.project_dir / EXECUTION_QUEUE).exists():
            view.warning(f"{exc}; the cancel is matched against the journal alone")
        scripts = []
    queued = {script.label: script for script in scripts}
    wanted = [target for target in targets if target.entry.script in queued]
    if not wanted:
        return targets
    # The versions as status learns them: from the daemons' stored listings, else from a child.
    executor = LocalExecutor(project.project_dir)
    catalog = ScriptCatalog(
        executor,
        on_lines=lambda *_: None,
        on_event=lambda *_: None,
        store=ListingStore(paths.listings, readable=True, writable=False),
        timeout=project.listing_timeout,
        models_dir=project.models_dir,
        warn=lambda message: None,
    )
    fingerprints = Fingerprints()
    try:
        for target in wanted:
            script = queued[target.entry.script]
            target.in_queue = True
            try:
                listing = catalog.listing(script.path, script.label, fingerprints.sha256(script.path))
            except OSError:
                continue  # unreadable now: the journal's versions are all that is known
            if listing is not None and listing.error is None:
                target.listed = list(listing.names)
                target.queued = [name for name in listing.names if script.wants(name)]
    finally:
        executor.stop_all(signal.SIGKILL)  # a Ctrl-C while a script is listed: its child goes too
    return targets


def cancel_command(project: ProjectConfig, select: Sequence[str], view: ConsoleView) -> int:
    """``mlpipeline cancel SCRIPT[:VERSION] ...``: the exit code.

    Nothing is written unless every name can be asked and matches a version the journal or
    the queue knows: a typo cancels nothing and says so (exit 2), rather than asking daemons
    to stop what does not exist.
    """
    for item in select:
        refused = _refused(item)
        if refused is not None:
            view.error(refused + "; nothing was asked")
            return NOTHING_MATCHED
    try:
        entries = [parse_entry(item, project.models_dir, "cancel") for item in select]
    except ConfigError as exc:  # a name no file can have, one outside models_dir
        view.error(f"{exc}; nothing was asked")
        return NOTHING_MATCHED
    # A name given twice (or as two spellings of one file) is asked once.
    entries = list({(entry.script, entry.version): entry for entry in entries}.values())
    paths = OutputPaths(project.outputs_dir, hostname())
    journal = Journal(paths.journal, warn=view.warning)
    journal.read_without_lock()
    targets = _targets(project, entries, journal, paths, view)
    unmatched = [target for target in targets if not target.matched()]
    if unmatched:
        for target in unmatched:
            view.error(f"cancel {_shown(str(target.entry))}: {target.nothing()}")
        view.error("nothing was asked" + ("" if len(targets) == 1 else " (not of the other names either)"))
        return NOTHING_MATCHED
    project.outputs_dir.mkdir(parents=True, exist_ok=True)
    # Only for judging the daemons of claims, as status does: this command is no daemon.
    identity = DaemonIdentity(paths.host, 0, 0.0, process_namespace(paths.host), "")
    records = RecordKeeper(paths, journal, "", True, view.warning)  # a cut-off or paused version's end
    for target in targets:
        entry = target.entry
        # The request first: a daemon that chooses the version from here on already skips it.
        request = append_request(project.outputs_dir, CANCEL, entry.script, entry.version)
        journal.read_without_lock()
        running, cut_off, stopped = [], [], set()
        for script, version in journal.versions():
            if script != entry.script or entry.version not in (None, version):
                continue
            state = journal.state(script, version)
            latest = journal.latest(script, version) or {}
            if state is RunState.RUNNING and seems_alive(latest, identity, paths.heartbeats):
                running.append(f"{script}:{version} on {latest.get('host')}")
                stopped.add(version)
            elif state in (RunState.RUNNING, RunState.INTERRUPTED, RunState.PAUSED):
                # Cut off, or paused by early stopping, no daemon has it: recorded cancelled
                # now, so that -u does not resume it.
                paused = state is RunState.PAUSED
                how = "while paused at an early-stopping rung" if paused else "while cut off"
                reason = f"cancelled by `mlpipeline cancel {entry}` on {paths.host} {how}"
                writer = {"host": paths.host, "pid": os.getpid(), "daemon": "", "namespace": identity.namespace}
                if records.commit(cancelled_at_rest(writer, latest, reason), after=latest):
                    cut_off.append(f"{script}:{version} ({'paused at a rung' if paused else 'cut off earlier'})")
                    stopped.add(version)
        named = [name for name in target.queued if name not in stopped and entry.version in (None, name)]
        by_state: Dict[str, List[str]] = {}
        for name in named:
            state = journal.state(entry.script, name)
            ended = state if state in (RunState.FINISHED, RunState.STOPPED, RunState.CANCELLED) else None
            by_state.setdefault(ENDED_WORDS.get(ended, "queued"), []).append(f"{entry.script}:{name}")
        parts = []
        if running:
            parts.append(f"its daemon stops {', '.join(running)}")
        if cut_off:
            parts.append(f"{', '.join(cut_off)} recorded as cancelled in the journal")
        parts += [f"{words}: {', '.join(names)}" for words, names in by_state.items()]
        if not running and not cut_off and not by_state:
            parts.append("neither running nor queued now")
        parts.append("the daemons running now do not start it again in their session")
        view.info(
            f"cancel {request.target}: " + "; ".join(parts)
            + ". `mlpipeline -r`, `-r -u --retry-failed` or an edit of the script runs it again"
        )
    return 0


ENDED_WORDS = {
    RunState.FINISHED: "finished in an earlier run (-u skips it)",
    RunState.STOPPED: "stopped by early stopping already (for good)",
    RunState.CANCELLED: "cancelled already",
}
"""What `mlpipeline cancel` says of a version it names that has ended, by its state."""


def pause_command(project: ProjectConfig, view: ConsoleView, pause: bool) -> int:
    """``mlpipeline pause`` and ``mlpipeline resume``: the exit code."""
    project.outputs_dir.mkdir(parents=True, exist_ok=True)
    compact_if_grown(project.outputs_dir)  # first, so that what is in force now is read from a small file
    before = paused_by(ControlReader(project.outputs_dir, view.warning).read_new())
    append_request(project.outputs_dir, PAUSE if pause else RESUME)
    if pause:
        again = f" (it was paused already, by `mlpipeline pause` on {before.host} at {before.time})" if before else ""
        view.info(f"paused{again}: running versions finish; no daemon on this folder starts another until `mlpipeline resume`")
    elif before is None:
        view.info("not paused: the daemons on this folder start versions as they did; nothing to resume")
    else:
        view.info("resumed: the daemons on this folder start versions again")
    return 0


def _instant(text: object) -> Optional[datetime]:
    """An ISO 8601 time with its offset, as every record writes it; None for anything else."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
