"""The in-process executor: each version run in this very process, through the worker's code.

Every other executor keeps user code out of the daemon; two users need it in: ``mlpipeline
--pdb``, whose debugger opens on the user's own frame at the version's exception, and tests
of the loop's decisions, which need no process per version. A version runs here as its worker
would run it (the same hooks in the same order), with the folder, ``sys.argv``, ``sys.path``
and environment its child would have had; what it prints and reports comes through pipes to
the run's sinks, as a child's does. It runs to its end inside :meth:`Executor.submit`, so one
at a time; ``isolated`` is False: nothing can stop it from outside, and a version that ends
its process (``os._exit``) ends the caller.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.local import read_child_output
from mlpipeline.executors.protocol import ChildRequest
from mlpipeline.script_support import channel

PostMortem = Callable[[Any], None]
"""Called with the traceback of a version's exception, in the version's surroundings (pdb's
``post_mortem``)."""


class InProcessExecutor(Executor):
    """Runs each request in the calling process and thread, to its end, before submit returns."""

    where = "this process"
    isolated = False

    def __init__(self, work_dir: Path, post_mortem: Optional[PostMortem] = None) -> None:
        super().__init__(work_dir)
        self.post_mortem = post_mortem

    def _start(self, run: ChildRun) -> None:
        from mlpipeline.child.worker import answer

        self._place(run, {"child_pid": os.getpid(), "in_process": True})
        cpu = time.thread_time()
        with _surroundings(run.request, self.work_dir, run.env):
            with _output_to_sinks(run):
                result, failure = answer(run.request)
            if failure is not None and self.post_mortem is not None:
                cause = failure.__cause__
                if cause is not None and cause.__traceback__ is not None:
                    self.post_mortem(cause.__traceback__)
        self._finish(run, 0 if result.get("ok") else 1, time.thread_time() - cpu, None, result)

    def _signal(self, run: ChildRun, signum: int) -> None:
        """Nothing to reach: a run has ended inside submit() before anything can stop it."""


@contextmanager
def _surroundings(request: ChildRequest, work_dir: Path, env: Dict[str, str]) -> Iterator[None]:
    """The folder, arguments, import path and environment the version's child would have."""
    saved_cwd, saved_argv, saved_path = os.getcwd(), list(sys.argv), list(sys.path)
    saved_env = {name: os.environ.get(name) for name in env}
    os.chdir(work_dir)
    sys.argv = [request.script_path]
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _output_to_sinks(run: ChildRun) -> Iterator[None]:
    """sys.stdout, sys.stderr and the event channel into pipes read as a child's are; all that
    was written is delivered when it ends."""
    pipes = [os.pipe() for _ in range(3)]
    output_ended = read_child_output(run, *(read for read, _ in pipes))
    saved_streams = sys.stdout, sys.stderr
    (_, out), (_, err), (_, events) = pipes
    ours = [os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace") for fd in (out, err)]
    sys.stdout, sys.stderr = ours
    saved_events = channel.send_events_to(events)
    try:
        yield
    finally:
        channel.send_events_to(saved_events)
        sys.stdout, sys.stderr = saved_streams
        for stream in ours:  # ours, even if the script put streams of its own in their place
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        os.close(events)
        output_ended.wait()
