"""Control of a running queue from the command line: ``mlpipeline cancel``, ``pause`` and
``resume`` append requests (records/control.py), and each daemon's ControlWatch applies
them. A cancel stops the running versions it names (their trees killed; recorded as
cancelled, which -u neither resumes nor retries) and keeps this session from starting the
queued ones; a pause lets running versions finish and starts nothing new until a resume.
Requests are read every CONTROL_CHECK_INTERVAL_S, from any host sharing the folder."""
from __future__ import annotations

import os
import signal
import time
from typing import List, Sequence

from mlpipeline.execution.chooser import VersionChooser
from mlpipeline.execution.outcome import VersionRun
from mlpipeline.execution.reporter import Reporter
from mlpipeline.executors.base import Executor
from mlpipeline.queue.config import ProjectConfig, parse_entry
from mlpipeline.records.control import CANCEL, PAUSE, RESUME, ControlReader, ControlRequest, append_request, paused_by
from mlpipeline.records.heartbeat import seems_alive
from mlpipeline.records.identity import DaemonIdentity, hostname, process_namespace
from mlpipeline.records.journal import Journal
from mlpipeline.records.states import JournalEvent, RunState
from mlpipeline.watch.console import ConsoleView
from mlpipeline.records.paths import OutputPaths

CONTROL_CHECK_INTERVAL_S = 0.5


class ControlWatch:
    """Applies cancel, pause and resume requests to this daemon's session."""

    def __init__(self, paths: OutputPaths, executor: Executor, chooser: VersionChooser, reporter: Reporter) -> None:
        self._reader = ControlReader(paths.outputs_dir)
        self._executor = executor
        self._chooser = chooser
        self._say = reporter
        self._checked = 0.0
        # A pause asked before this daemon started holds it too; earlier cancels were for
        # the sessions running then.
        pause = paused_by(self._reader.read_new())
        self.paused = pause is not None
        if pause is not None:
            self._say_paused(pause)

    def check(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < CONTROL_CHECK_INTERVAL_S:
            return
        self._checked = now
        for request in self._reader.read_new():
            if request.action == CANCEL:
                self._cancel(request)
            elif request.action == PAUSE and not self.paused:
                self.paused = True
                self._say_paused(request)
            elif request.action == RESUME and self.paused:
                self.paused = False
                message = f"resumed by `mlpipeline resume` on {request.host} at {request.time}"
                self._say.daemon("INFO", message)
                self._say.view.info(message)

    def _say_paused(self, request: ControlRequest) -> None:
        message = (
            f"paused by `mlpipeline pause` on {request.host} at {request.time}: running versions finish, "
            "nothing new starts until `mlpipeline resume`"
        )
        self._say.daemon("INFO", message)
        self._say.view.warning(message)

    def _cancel(self, request: ControlRequest) -> None:
        self._chooser.cancel(request)
        stopped: List[str] = []
        for run in list(self._executor.running.values()):
            version_run = run.tag
            if not isinstance(version_run, VersionRun) or version_run.lost or version_run.cancelled:
                continue
            planned = version_run.planned
            if request.matches(planned.script.label, planned.version):
                version_run.cancelled = f"cancelled by `mlpipeline cancel {request.target}` on {request.host} at {request.time}"
                self._executor.stop(run, signal.SIGKILL)
                stopped.append(planned.label)
        what = f"stopping {', '.join(stopped)}" if stopped else "none of it runs here"
        message = f"cancel {request.target} (asked on {request.host}): {what}; not started again in this session"
        self._say.daemon("WARNING", message)
        self._say.view.warning(message)


def cancel_command(project: ProjectConfig, select: Sequence[str], view: ConsoleView) -> int:
    """``mlpipeline cancel SCRIPT[:VERSION] ...``: the exit code."""
    entries = [parse_entry(item, project.models_dir, "cancel") for item in select]
    project.outputs_dir.mkdir(parents=True, exist_ok=True)
    paths = OutputPaths(project.outputs_dir, hostname())
    journal = Journal(paths.journal, warn=view.warning)
    # Only for judging the daemons of claims, as status does: this command is no daemon.
    identity = DaemonIdentity(paths.host, 0, 0.0, process_namespace(paths.host), "")
    for entry in entries:
        # The request first: a daemon that chooses the version from here on already skips it.
        request = append_request(project.outputs_dir, CANCEL, entry.script, entry.version)
        journal.read_without_lock()
        running, cut_off, known = [], [], False
        for script, version in journal.versions():
            if script != entry.script or entry.version not in (None, version):
                continue
            known = True
            state = journal.state(script, version)
            latest = journal.latest(script, version) or {}
            if state is RunState.RUNNING and seems_alive(latest, identity, paths.heartbeats):
                running.append(f"{script}:{version} on {latest.get('host')}")
            elif state in (RunState.RUNNING, RunState.INTERRUPTED):
                # Cut off, no daemon has it: recorded cancelled now, so -u does not resume it.
                fields = {key: latest.get(key) for key in ("script", "version", "sha256")}
                fields.update(host=paths.host, pid=os.getpid())
                reason = f"cancelled by `mlpipeline cancel {entry}` on {paths.host} while cut off"
                if journal.append_if_latest(latest, JournalEvent.CANCELLED, **fields, reason=reason) is not None:
                    cut_off.append(f"{script}:{version}")
        if not known and not (project.models_dir / entry.script).is_file():
            view.warning(f"cancel {request.target}: models_dir has no {entry.script} and the journal never saw it; nothing to cancel")
            continue
        parts = []
        if running:
            parts.append(f"its daemon stops {', '.join(running)}")
        if cut_off:
            parts.append(f"{', '.join(cut_off)} (cut off earlier) recorded as cancelled in the journal")
        parts.append("the daemons running now do not start it again in their session")
        view.info(
            f"cancel {request.target}: " + "; ".join(parts)
            + ". `mlpipeline -r`, `-r -u --retry-failed` or an edit of the script runs it again"
        )
    return 0


def pause_command(project: ProjectConfig, view: ConsoleView, pause: bool) -> int:
    """``mlpipeline pause`` and ``mlpipeline resume``: the exit code."""
    project.outputs_dir.mkdir(parents=True, exist_ok=True)
    append_request(project.outputs_dir, PAUSE if pause else RESUME)
    if pause:
        view.info("paused: running versions finish; no daemon on this folder starts another until `mlpipeline resume`")
    else:
        view.info("resumed: the daemons on this folder start versions again")
    return 0
