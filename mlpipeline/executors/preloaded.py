"""Runs each child as a worker forked from the preload server (preload_server.py), which has
already imported the heavy modules mlp.config's ``preload`` names, and is its workers' keeper.

The worker's output reaches the daemon through pipes, as a plain child's does; should the
server be gone, a version starts the plain way (local.py).
"""
from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.local import LocalExecutor, run_thread
from mlpipeline.executors.preload_server import PreloadClient, start_preload
from mlpipeline.executors.process_tree import ProcessTree, sample_until


class PreloadExecutor(LocalExecutor):
    """Children forked from the preload server; plain local children once it is gone."""

    def __init__(self, work_dir: Path, preload: PreloadClient) -> None:
        super().__init__(work_dir)
        self.preload = preload

    def _start(self, run: ChildRun) -> None:
        if not self.preload.alive():
            super()._start(run)
            return
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        events_read, events_write = os.pipe()
        try:
            pid, connection, answer = self.preload.fork(
                str(run.run_dir), str(self.work_dir), run.env, (out_write, err_write, events_write)
            )
        except BaseException:
            for fd in (out_read, err_read, events_read):
                os.close(fd)
            raise
        finally:
            for fd in (out_write, err_write, events_write):
                os.close(fd)
        run.pid = pid
        tree = ProcessTree(pid, count_root=True)
        self._trees[id(run)] = tree
        run_thread(sample_until, tree, run.done)
        readers = self._read_output(run, out_read, err_read, events_read)
        run_thread(self._wait_forked, run, connection, answer, tree, readers)

    def close(self) -> None:
        self.preload.stop()

    def _wait_forked(self, run: ChildRun, connection: Any, answer: Any, tree: ProcessTree, readers: List[threading.Thread]) -> None:
        try:
            ended = json.loads(answer.readline() or "{}")
        except ValueError:
            ended = {}
        finally:
            connection.close()
        tree.sample()
        tree.signal(signal.SIGKILL)  # what the version left running ends with it
        for reader in readers:
            reader.join(timeout=10)
        self._trees.pop(id(run), None)
        peak = max(tree.peak_rss_bytes, int(ended.get("maxrss_kib") or 0) * 1024)
        # No answer: the preload server died with the child still unreported; count it as killed.
        returncode = ended.get("returncode", -signal.SIGKILL)
        self._finish(run, returncode, ended.get("cpu_s"), peak)


def local_executor(
    work_dir: Path, preload: Sequence[str], warn: Callable[[str], None], heartbeat: Optional[Dict[str, Any]] = None
) -> Executor:
    """The executor for this host: preloaded when ``preload`` names modules and the server
    starts (else with one warning, plain). ``heartbeat``: the daemon's, which keepers watch."""
    client = start_preload(list(preload), warn, heartbeat)
    return LocalExecutor(work_dir) if client is None else PreloadExecutor(work_dir, client)
