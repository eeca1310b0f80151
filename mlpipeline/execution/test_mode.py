"""Test mode: every version of models_test.config, one step each, in temporary model dirs.

It stops at the first error with the user's traceback, and writes nothing under outputs/.
"""
from __future__ import annotations

import shutil
import signal
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mlpipeline.execution.framework_noise import without_noise
from mlpipeline.execution.gpus import gpu_request_problems
from mlpipeline.execution.signals import StopSignals
from mlpipeline.executors.base import ChildOutcome, Executor
from mlpipeline.executors.preloaded import local_executor
from mlpipeline.executors.protocol import RUN_VERSION, ChildRequest, version_environment
from mlpipeline.executors.protocol import missing_message
from mlpipeline.queue.catalog import Fingerprints, ScriptCatalog, combined, refused_message, unknown_versions
from mlpipeline.queue.config import TEST_QUEUE, ConfigError, ProjectConfig, QueueEntry
from mlpipeline.queue.queue_file import QueuedScript, QueueFile
from mlpipeline.records.ends import new_run_id
from mlpipeline.records.paths import OutputPaths
from mlpipeline.watch.console import ConsoleView


class DryRun:
    """One pass over the test queue."""

    def __init__(
        self,
        project: ProjectConfig,
        only: Sequence[QueueEntry],
        view: ConsoleView,
        executor: Optional[Executor] = None,
        debug: bool = False,
    ) -> None:
        self.project = project
        self.view = view
        self.debug = debug  # --pdb: a failed version runs again here, in the debugger
        self.queue = QueueFile(
            project.project_dir / TEST_QUEUE, TEST_QUEUE, project.models_dir, project.outputs_dir, view.warning, only
        )
        self.queue.load()
        self._own_executor = executor is None  # closed here only if made here
        self.executor = executor or local_executor(project.project_dir, project.preload, view.warning, scripts=project.preload_scripts)
        self.signals = StopSignals()
        self.catalog = ScriptCatalog(
            self.executor,
            lambda label, stream, lines: view.child_lines(label, without_noise(lines)),
            lambda label, event: view.child_line(label, str(event.get("message", ""))),
            cancel=lambda: self.signals.count > 0,
            timeout=project.listing_timeout,
            models_dir=project.models_dir,
            warn=lambda message: None,  # a refused version is one of the problems _plan reports
        )
        self.rows: List[Tuple[str, str, float]] = []

    def run(self) -> int:
        """Returns the exit code: 0 all passed, 1 a failure, 130/143 interrupted."""
        try:
            return self._run()
        finally:
            if self._own_executor:
                self.executor.close()

    def _run(self) -> int:
        with self.signals:
            planned = self._plan()
            if planned is None:
                return self.signals.exit_code or 1
            if not planned:
                self.view.info(f"{TEST_QUEUE} queues no versions: nothing to test")
                return 0
            if self.project.executor != "local":
                self.view.info(f'test mode runs on this host; -r runs the versions with executor = "{self.project.executor}"')
            if self.project.early_stopping is not None:
                self.view.info("test mode runs one step of each version; [EARLY_STOPPING] judges them in execution mode (-r)")
            for script, version in planned:
                if not self._run_one(script, version):
                    return self.signals.exit_code or 1
        passed = f"all {len(self.rows)} versions passed" if len(self.rows) != 1 else "the one version passed"
        self._summary([f"test mode: {passed}; run {'them' if len(self.rows) != 1 else 'it'} for real with: mlpipeline -r -u"])
        return 0

    def _plan(self) -> Optional[List[Tuple[QueuedScript, str]]]:
        """Every queued version in order, or None after reporting why the queue cannot be tested."""
        fingerprints = Fingerprints()
        planned = []
        problems: List[str] = []
        unknown: List[ConfigError] = []
        only_named = {script.label: script.entry_lines for script in self.queue.only_named()}
        for script in self.queue.current():
            try:
                sha256 = fingerprints.sha256(script.path)
            except OSError as exc:
                self.view.error(f"{script.label} cannot be read ({exc.strerror or exc})")
                return None
            listing = self.catalog.listing(script.path, script.label, sha256)
            if listing is None:
                return None
            if listing.error is not None:
                self.view.error(listing.error.message)
                if listing.error.traceback:
                    self.view.block(listing.error.traceback)
                return None
            unknown.extend(unknown_versions(script.label, script.entry_lines, listing, TEST_QUEUE))
            unknown.extend(unknown_versions(script.label, only_named.get(script.label, ()), listing, "--only"))
            problems.extend(refused_message(script.label, name, why) for name, why in listing.refused.items() if script.wants(name))
            for slip in listing.slips:
                self.view.warning(slip)
            for name in listing.names:
                if script.wants(name):
                    planned.append((script, name))
                    if name in listing.missing:
                        problems.append(missing_message(f"{script.label}:{name}", listing.missing[name]))
                    if name in listing.invalid:
                        problems.append(listing.invalid[name])
                    # Test mode's model_dir is a temporary folder, but -r would refuse this one.
                    suffix_problem = OutputPaths.model_dir_problem(f"{script.label}:{name}", script.label, listing.suffixes.get(name))
                    if suffix_problem:
                        problems.append(suffix_problem)
                    # Test mode hands out no GPU, but -r would fail a version asking for GPUs wrongly.
                    problems.extend(gpu_request_problems(f"{script.label}:{name}", listing.gpus.get(name), listing.gpu_memory.get(name)))
        if unknown:
            # A queue naming what is not there is a config error (exit 2), as a missing script is.
            raise combined(unknown)
        if problems:
            # Checked before any training: a wrong queue or parameter fails in seconds, not hours in.
            for problem in problems:
                self.view.error(problem)
            return None
        return planned

    def _run_one(self, script: QueuedScript, version: str) -> bool:
        label = f"{script.label}:{version}"
        self.view.version_started(label, "test mode, 1 step")
        model_dir = tempfile.mkdtemp(prefix="mlpipeline-test-")
        try:
            outcome = self.executor.call(
                self._request(script, version, model_dir),
                lambda stream, lines: self.view.child_lines(label, without_noise(lines)),
                lambda event: self._child_event(label, event),
                cancel=lambda: self.signals.count > 0,
                timeout=self.project.version_timeout,
                env=self._environment(script, version, model_dir),
            )
        except OSError as exc:  # E2BIG for a name too long for the environment, say
            self.view.version_ended(label, "failed", 0.0, f"{label} could not be started: {exc.strerror or exc}")
            self.rows.append((label, "failed", 0.0))
            self._summary([f"test mode stopped at the first failure: {label}"])
            return False
        finally:
            shutil.rmtree(model_dir, ignore_errors=True)
        if self.signals.count:
            self.view.version_ended(label, "interrupted", outcome.wall_s)
            self._summary(["test mode interrupted"])
            return False
        result = outcome.result or {}
        if result.get("ok"):
            self.view.version_ended(label, "passed", outcome.wall_s)
            self.rows.append((label, "passed", outcome.wall_s))
            return True
        self._report_failure(label, outcome, result)
        if self.debug:
            if (result.get("error") or {}).get("traceback"):
                self._debug(script, version)
            else:
                self.view.info(f"--pdb: {label} raised no exception of its code to open the debugger at (it ended otherwise)")
        return False

    def _request(self, script: QueuedScript, version: str, model_dir: str) -> ChildRequest:
        return ChildRequest(
            action=RUN_VERSION,
            script_path=str(script.path),
            script_label=script.label,
            version=version,
            model_dir=model_dir,
            execution_mode=False,
            fresh=True,
            models_dir=str(self.project.models_dir),
        )

    @staticmethod
    def _environment(script: QueuedScript, version: str, model_dir: str) -> Dict[str, str]:
        # Named as in execution mode, for the user's own tracking code; nothing records the id.
        return version_environment(new_run_id(), script.label, version, model_dir)

    def _debug(self, script: QueuedScript, version: str) -> None:
        """--pdb: the failed version again, in this process, with the debugger at its exception."""
        import pdb

        from mlpipeline.executors.in_process import InProcessExecutor

        label = f"{script.label}:{version}"
        self.view.info(f"--pdb: running {label} again in this process; the debugger opens at its exception (q quits)")
        model_dir = tempfile.mkdtemp(prefix="mlpipeline-test-")
        # The debugger's own Ctrl-C, not the queue's: it interrupts the run or the prompt.
        from mlpipeline.child.interrupts import on_sigint

        handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, on_sigint)  # Python's own, telling a Ctrl-C from the script's raise
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            outcome = InProcessExecutor(self.project.project_dir, post_mortem=pdb.post_mortem).call(
                self._request(script, version, model_dir),
                lambda stream, lines: self.view.child_lines(label, without_noise(lines)),
                lambda event: self._child_event(label, event),
                env=self._environment(script, version, model_dir),
            )
        except KeyboardInterrupt:
            self.view.info("--pdb: interrupted")
            return
        finally:
            for number, handler in handlers.items():
                signal.signal(number, handler)
            shutil.rmtree(model_dir, ignore_errors=True)
        if (outcome.result or {}).get("ok"):
            self.view.warning(f"--pdb: {label} did not fail when run again in this process")

    def _report_failure(self, label: str, outcome: ChildOutcome, result: Dict[str, Any]) -> None:
        error = result.get("error") or {}
        if error.get("traceback"):
            self.view.block(error["traceback"])
        reason = error.get("message") or f"{label}: its process {outcome.exit_description}"
        if outcome.timed_out:
            reason = f"{label} ran past version_timeout ({self.project.version_timeout:g} s); its process tree was killed"
        self.view.version_ended(label, "failed", outcome.wall_s, reason)
        self.rows.append((label, "failed", outcome.wall_s))
        self._summary([f"test mode stopped at the first failure: {label}"])

    def _child_event(self, label: str, event: Dict[str, Any]) -> None:
        if event.get("type") == "log":
            self.view.child_line(label, str(event.get("message", "")))

    def _summary(self, footer: List[str]) -> None:
        self.view.summary("test mode", self.rows, footer)
