"""The keeper: the first process of every child, between the daemon and the user's code.

``python -m mlpipeline.keeper RUN_DIR`` (or a fork of the preload server) becomes the keeper
of one child. It makes itself the subreaper of everything below it, forks the *worker* that
imports the script and runs it (child.py), and watches. It runs no user code, so it answers
whatever the version does (a loop holding the interpreter, a crash, a double fork):

- The worker ends: what the version left running is frozen and killed (process_tree.py),
  and the keeper ends the way the worker did, with its exit status or by its signal, so that
  to the daemon the keeper *is* the child.
- The daemon dies, however (kill -9, the out-of-memory killer, SIGHUP): the lifeline, a pipe
  whose only write end the daemon holds, reads end-of-file, and the whole tree is killed at
  once. A version never trains on unsupervised.
- The daemon stops beating (SIGSTOP, a frozen VM) while a daemon elsewhere watches its
  heartbeat: before that daemon may take the version over (after STALE_BEATS), the keeper
  ends the version and says it was cut off, so that it never runs twice at once.
"""
from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from mlpipeline.heartbeat import STALE_BEATS, beats_elsewhere
from mlpipeline.protocol import RESULT_FILE, ChildRequest

LIFELINE_FD_VARIABLE = "MLPIPELINE_LIFELINE_FD"

KEEPER_STALE_BEATS = STALE_BEATS - 2
"""Beats of silence after which the keeper ends its version, two before another daemon may
take it over."""

REAP_DEADLINE_S = 10.0
"""How long the keeper waits for killed processes to be gone before it ends anyway."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def adopt_orphans() -> None:
    """Become the subreaper of this child's processes (Linux), so that one whose parent dies
    stays below the keeper, where it can be found, instead of going to init."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


class Keeper:
    """Watches one worker and everything below it."""

    def __init__(self, run_dir: Path, request: ChildRequest, lifeline: Optional[int]) -> None:
        self.run_dir = run_dir
        self.request = request
        self.lifeline = lifeline
        self.worker = 0
        self.worker_status: Optional[int] = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        heartbeat = request.heartbeat or {}
        self._beat_file = Path(heartbeat["file"]) if heartbeat else None
        self._interval = float(heartbeat.get("interval", 1.0))
        self._last_beat: Optional[bytes] = self._read_beat()
        self._last_change = time.monotonic()

    def start_worker(self) -> None:
        # SIGCHLD wakes the watch loop through the wake pipe; installed before the fork, so no
        # end can go unnoticed.
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        pid = os.fork()
        if pid == 0:
            _become_worker(self.run_dir, [self._wake_read, self._wake_write, self.lifeline])
        self.worker = pid
        # The daemon signals the whole process group: a stop is for the worker to handle.
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def watch(self) -> int:
        """Wait for the worker; returns its wait status, or never returns if the version had to go."""
        watched = [self._wake_read] + ([self.lifeline] if self.lifeline is not None else [])
        # SIGCHLD and the lifeline wake the loop; the timeout is for the heartbeat, and a backstop.
        poll = min(self._interval, 1.0) if self._beat_file else 1.0
        while True:
            ready, _, _ = select.select(watched, [], [], poll)
            if self._wake_read in ready:
                os.read(self._wake_read, 512)
            self._reap()
            if self.worker_status is not None:
                return self.worker_status
            if self.lifeline in ready and not os.read(self.lifeline, 512):
                self._end_all()
                os._exit(1)  # nobody is left to read how it ended
            if self._beat_file is not None and self._daemon_silent():
                self._end_all()
                self._write_cut_off()
                os._exit(1)

    def end_leftovers(self) -> None:
        """After the worker: whatever the version left running goes with it."""
        self._end_all()

    def _daemon_silent(self) -> bool:
        beat = self._read_beat()
        now = time.monotonic()
        if beat != self._last_beat:
            self._last_beat, self._last_change = beat, now
            return False
        if now - self._last_change < KEEPER_STALE_BEATS * self._interval:
            return False
        heartbeat = self.request.heartbeat or {}
        return beats_elsewhere(Path(heartbeat["folder"]), heartbeat["daemon"], heartbeat["namespace"])

    def _read_beat(self) -> Optional[bytes]:
        if self._beat_file is None:
            return None
        try:
            return self._beat_file.read_bytes()
        except OSError:
            return None

    def _write_cut_off(self) -> None:
        from mlpipeline.files import write_json_atomic

        if (self.run_dir / RESULT_FILE).exists():
            return
        silent_s = time.monotonic() - self._last_change
        message = (
            f"stopped after its daemon was silent for {silent_s:.0f} s (paused or frozen?), before a daemon "
            "elsewhere could take it over: a version never runs twice at once"
        )
        result: Dict[str, Any] = {"ok": False, "cut_off": True, "error": {"message": message, "phase": "keeper"}}
        try:
            write_json_atomic(self.run_dir / RESULT_FILE, result, durable=False)
        except OSError:
            pass

    def _end_all(self) -> None:
        import psutil

        from mlpipeline.process_tree import end_processes

        end_processes(psutil.Process(), include_root=False)
        deadline = time.monotonic() + REAP_DEADLINE_S
        while time.monotonic() < deadline:
            if not self._reap():
                return
            time.sleep(0.01)

    def _reap(self) -> bool:
        """Collect every child that ended (the worker and adopted orphans); False once none is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.worker:
                self.worker_status = status


def _become_worker(run_dir: Path, close: List[Optional[int]]) -> None:
    """The worker's side of the fork: run the request, then end; it never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in close:
            if fd is not None:
                os.close(fd)
        os.environ.pop(LIFELINE_FD_VARIABLE, None)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        from mlpipeline import child

        code = child.main([str(run_dir)])
        atexit._run_exitfuncs()  # what a script registered runs, as at a normal exit
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        # Stopped by the daemon's SIGINT: end by that signal, as a plain interpreter would.
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 - the fork must never return into the keeper
        import traceback

        traceback.print_exc()
    finally:
        _flush()
        os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def end_like(status: int) -> None:
    """End this process as the wait status ``status`` says the worker ended; never returns."""
    _flush()
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                import resource

                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the worker dumped its core, if any
            except (ImportError, ValueError, OSError):
                pass
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        time.sleep(1.0)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    request = ChildRequest.read(run_dir)
    adopt_orphans()
    value = os.environ.get(LIFELINE_FD_VARIABLE, "")
    keeper = Keeper(run_dir, request, int(value) if value.isdigit() else None)
    keeper.start_worker()
    status = keeper.watch()
    keeper.end_leftovers()
    end_like(status)


if __name__ == "__main__":
    main()
