"""Runs each child as a worker forked from the preload server (preload_server.py), which has
already imported the heavy modules mlp.config's ``preload`` names, and is its workers' keeper.

The worker's output reaches the daemon through pipes, as a plain child's does, and its end
through the connection on which it was asked for; a kill is asked of the keeper on that
connection. Should the server be gone, a version starts the plain way (local.py).
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.local import OUTPUT_AFTER_END_S, LocalChild, LocalExecutor, end_what_the_keeper_left, run_thread, wall_from_child
from mlpipeline.executors.preload_client import PreloadClient, start_preload
from mlpipeline.executors.process_tree import ProcessTree
from mlpipeline.executors.protocol import KILL_WORKER, RUN_VERSION, new_run_folder, take_result


class PreloadExecutor(LocalExecutor):
    """Children forked from the preload server; plain local children once it is gone."""

    def __init__(self, work_dir: Path, preload: PreloadClient, scripts: bool = False, warn: Callable[[str], None] = print) -> None:
        super().__init__(work_dir)
        self.preload = preload
        self.scripts = scripts  # preload_scripts: each script's versions forked from its import
        self._warn = warn

    def _start(self, run: ChildRun) -> None:
        if not self.preload.alive():
            super()._start(run)
            return
        child = run.handle = LocalChild(new_run_folder(run.request))
        answers: List[Tuple[Any, Any]] = []
        request = run.request
        script = None
        if self.scripts and request.action == RUN_VERSION and request.sha256:
            script = {"path": request.script_path, "sha256": request.sha256, "models_dir": request.models_dir, "label": request.script_label}

        def start(out: int, err: int, events: int) -> int:
            pid, connection, answer, note = self.preload.fork(str(child.run_dir), str(self.work_dir), run.env, (out, err, events), script)
            answers.append((connection, answer))
            child.keeper = connection
            if note:
                self._warn(note)
            return pid

        try:
            tree, output_ended = self._spawn(run, start, count_root=True)  # the worker runs user code
        except BaseException:
            shutil.rmtree(child.run_dir, ignore_errors=True)
            raise
        run_thread(self._wait_forked, run, *answers[0], tree, output_ended)

    def close(self) -> None:
        self.preload.stop()

    def _ask_keeper_to_kill(self, run: ChildRun) -> bool:
        connection = run.handle.keeper
        if connection is None:
            return super()._ask_keeper_to_kill(run)  # started the plain way: its own keeper
        try:
            connection.sendall(KILL_WORKER)
        except OSError:
            return False  # its server is gone: nobody is left to ask
        return True

    def _kill_past_keeper(self, run: ChildRun) -> None:
        super()._kill_past_keeper(run)
        connection = run.handle.keeper
        if connection is not None:
            try:
                # A server that cannot answer never tells the worker's end: stop waiting for it.
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _wait_forked(self, run: ChildRun, connection: Any, answer: Any, tree: ProcessTree, output_ended: threading.Event) -> None:
        try:
            ended = json.loads(answer.readline() or "{}")
        except (OSError, ValueError):  # OSError: the server died mid-answer
            ended = {}
        finally:
            connection.close()
        end_what_the_keeper_left(tree)
        output_ended.wait(timeout=OUTPUT_AFTER_END_S)
        peak = max(tree.peak_rss_bytes, int(ended.get("maxrss_kib") or 0) * 1024)
        # No answer: the preload server died with the child still unreported; count it as killed.
        returncode = ended.get("returncode", -signal.SIGKILL)
        gpu = (tree.peak_gpu_bytes, tree.gpu_utilization)
        result = take_result(run.handle.run_dir)
        self._finish(run, returncode, ended.get("cpu_s"), peak, result, gpu, wall_s=wall_from_child(run, result))


def local_executor(
    work_dir: Path,
    preload: Sequence[str],
    warn: Callable[[str], None],
    heartbeat: Optional[Dict[str, Any]] = None,
    scripts: bool = False,
) -> Executor:
    """The executor for this host: preloaded when ``preload`` names modules or ``scripts``
    (preload_scripts) is set, and the server starts (else with one warning, plain).
    ``heartbeat``: the daemon's, which keepers watch."""
    client = start_preload(list(preload), warn, heartbeat, scripts)
    return LocalExecutor(work_dir) if client is None else PreloadExecutor(work_dir, client, scripts, warn)
