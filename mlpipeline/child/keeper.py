"""Keepers: the processes between the daemon and the user's code, which end every version's
processes together, whatever the version or the daemon does.

Every *worker* (the process that imports a script and runs it, worker.py) has a keeper as its
parent: ``python -m mlpipeline.child.keeper RUN_DIR`` keeps one worker, which it forks itself; the
preload server (preload_server.py) keeps all those it forks. A keeper runs no user code, so it
answers whatever the workers do (a loop holding the interpreter, a crash, a double fork):

- Each worker is the subreaper of what it starts, and the keeper of everything else: so an
  orphan stays below its worker while the worker runs, and comes to the keeper once it has
  ended. When a worker ends, every process below the keeper that is no running worker is
  frozen and killed (process_tree.py): a fork-setsid-fork no longer escapes.
- The daemon dies, however (kill -9, the out-of-memory killer): the lifeline, a pipe whose
  only write end the daemon holds, reads end-of-file, and everything below the keeper is
  killed at once. A version never trains on unsupervised.
- The daemon stops beating (SIGSTOP, a frozen VM) while a daemon elsewhere watches its
  heartbeat: before that daemon may take the versions over (after STALE_BEATS), the keeper
  ends them and writes that they were cut off, so that none runs twice at once.
"""
from __future__ import annotations

import atexit
import os
import select
import signal

_EARLY_STOPS: list = []
"""The stop signals the daemon sent while this keeper was starting, before its worker existed:
the worker's, which it gets as soon as it runs. A keeper that died of one here, of Python's
KeyboardInterrupt, would print a traceback among the version's lines."""
if __name__ == "__main__":
    for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(_signum) != signal.SIG_IGN:
            signal.signal(_signum, lambda signum, frame: _EARLY_STOPS.append(signum))
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # see Keeper.__init__

import sys  # noqa: E402 - after the handlers above, which the first moments need
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

from mlpipeline.executors.protocol import ENDED_EPOCH, LIFELINE_FD_VARIABLE, RESULT_FILE, ChildRequest, cut_off_result  # noqa: E402
from mlpipeline.records.files import read_regular_bytes  # noqa: E402
from mlpipeline.records.heartbeat import STALE_BEATS, beats_elsewhere  # noqa: E402

KEEPER_STALE_BEATS = STALE_BEATS - 2
"""Beats of silence after which a keeper ends its versions, two before another daemon may
take them over."""

REAP_DEADLINE_S = 10.0
"""How long a keeper waits for killed processes to be gone before it goes on anyway."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Ended = Tuple[int, int, Any]
"""A worker that ended: (pid, wait status, resource usage)."""


def adopt_orphans() -> None:
    """Become the subreaper of this process's descendants (Linux), so that one whose parent
    dies stays below this process, where it can be found, instead of going to init."""
    if not sys.platform.startswith("linux"):
        return
    try:
        _prctl()(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _prctl() -> Callable[..., int]:
    """libc's prctl, through _ctypes, the C half of ctypes: importing ctypes itself (its
    Python half, which defines every C type) takes 7 to 10 ms, paid by every version started
    without a preload; this takes about 2. Through ctypes where _ctypes differs."""
    try:
        import _ctypes

        class Int(_ctypes._SimpleCData):  # what ctypes.c_int is
            _type_ = "i"

        class Function(_ctypes.CFuncPtr):  # what ctypes.CDLL makes of a C function
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = Int

        return Function(_ctypes.dlsym(_ctypes.dlopen(None), "prctl"))
    except (ImportError, AttributeError, TypeError):
        import ctypes

        return ctypes.CDLL(None).prctl


def lifeline_from_environment() -> Optional[int]:
    value = os.environ.pop(LIFELINE_FD_VARIABLE, "")
    return int(value) if value.isdigit() else None


class Keeper:
    """The keeper of the workers this process forks (one, or the preload server's many)."""

    def __init__(self, lifeline: Optional[int], heartbeat: Optional[Dict[str, Any]]) -> None:
        self.lifeline = lifeline
        self.heartbeat = heartbeat
        self.workers: Dict[int, Path] = {}  # pid -> run folder
        self._parent = os.getppid()  # the daemon (or a Slurm job, a Ray task) that keeps this keeper
        adopt_orphans()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        # SIGCHLD wakes the watch loop through the wake pipe; installed before any fork, so no
        # end goes unnoticed.
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # SIGUSR1 asks a version for a checkpoint (a Slurm job's warning, sent to its whole
        # process group): not this keeper's to die of, nor its worker's before it listens.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        self._interval = float((heartbeat or {}).get("interval", 1.0))
        self._beat_file = Path(heartbeat["file"]) if heartbeat else None
        self._last_beat = self._read_beat()
        self._last_change = time.monotonic()

    def fork_worker(self, run_dir: Path, become_worker: Callable[[], None], keep: Sequence[int] = ()) -> int:
        """Fork a worker that runs ``become_worker()`` (which must never return); ``keep``: the
        file descriptors of this keeper the worker keeps, all others of the keeper are closed."""
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for fd in (self._wake_read, self._wake_write, self.lifeline):
                    if fd is not None and fd not in keep:
                        os.close(fd)
                for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, signal.SIG_DFL)
                from mlpipeline.child.interrupts import on_sigint

                signal.signal(signal.SIGINT, on_sigint)
                adopt_orphans()  # what the worker starts stays below it while it runs
                become_worker()
            finally:
                os._exit(1)
        self.workers[pid] = run_dir
        return pid

    def watch(self, others: Sequence[Any] = (), timeout: float = 1.0) -> Tuple[List[Ended], List[Any]]:
        """One look: the workers that ended (their leftovers ended already), and which of
        ``others`` (sockets, fds) can be read. Never returns once the daemon is gone."""
        watched: List[Any] = [self._wake_read, *others]
        if self.lifeline is not None:
            watched.append(self.lifeline)
        if self._beat_file is not None:
            timeout = min(timeout, self._interval)
        ready, _, _ = select.select(watched, [], [], timeout)
        if self._wake_read in ready:
            os.read(self._wake_read, 512)
        ended = self._reap()
        if ended:
            ended += self._end(everything=False)
        if self.lifeline is not None and self.lifeline in ready and not os.read(self.lifeline, 512):
            # The daemon died, or asked this keeper to kill its tree (it closed the lifeline).
            run_dirs = list(self.workers.values())
            self._end(everything=True)
            if os.getppid() != self._parent:
                import shutil  # only now: every version's keeper starts without it

                # Died: nobody reads the runs' folders now (one alive takes the result itself).
                for run_dir in run_dirs:
                    shutil.rmtree(run_dir, ignore_errors=True)
            _end_killed()
        if self._beat_file is not None and self.workers and self._daemon_silent():
            self._write_cut_off()
            ended += self._end(everything=True)
        return ended, [item for item in ready if item in others]

    def kill_worker(self, pid: int) -> None:
        """Freeze and kill worker ``pid`` and all below it; its end comes from :meth:`watch`."""
        if pid in self.workers:
            _end_tree(pid)

    # -- inside ------------------------------------------------------------------------

    def _reap(self) -> List[Ended]:
        """Collect every child that ended: the workers' ends are returned, orphans just go."""
        ended: List[Ended] = []
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            if pid == 0:
                return ended
            if self.workers.pop(pid, None) is not None:
                ended.append((pid, status, usage))

    def _end(self, everything: bool) -> List[Ended]:
        """Freeze and kill what ended workers left (every process below this one outside the
        running workers' trees: an orphan goes to its worker while the worker runs), or, with
        ``everything``, all below this one; wait a moment for them to be gone."""
        from mlpipeline.executors.child_pids import children_of

        me = os.getpid()
        for pid in children_of(me):
            if everything or pid not in self.workers:
                _end_tree(pid)
        ended: List[Ended] = []
        deadline = time.monotonic() + REAP_DEADLINE_S
        while time.monotonic() < deadline:
            ended += self._reap()
            if all(pid in self.workers for pid in children_of(me)) and (not everything or not self.workers):
                break
            time.sleep(0.005)
        return ended

    def _daemon_silent(self) -> bool:
        beat = self._read_beat()
        now = time.monotonic()
        if beat != self._last_beat:
            self._last_beat, self._last_change = beat, now
            return False
        if now - self._last_change < KEEPER_STALE_BEATS * self._interval:
            return False
        heartbeat = self.heartbeat or {}
        return beats_elsewhere(Path(heartbeat["folder"]), heartbeat["daemon"], heartbeat["namespace"])

    def _read_beat(self) -> Optional[bytes]:
        if self._beat_file is None:
            return None
        try:
            return read_regular_bytes(self._beat_file, 1 << 16)  # a FIFO put in its place would hold the keeper
        except OSError:
            return None

    def _write_cut_off(self) -> None:
        """The daemon has been silent too long: every running version is to go, said to be cut off."""
        from mlpipeline.records.files import write_json_atomic

        silent_s = time.monotonic() - self._last_change
        message = (
            f"stopped after its daemon was silent for {silent_s:.0f} s (paused or frozen?), before a daemon "
            "elsewhere could take it over: a version never runs twice at once"
        )
        for run_dir in self.workers.values():
            if (run_dir / RESULT_FILE).exists():
                continue
            result = cut_off_result(message, "keeper")
            result[ENDED_EPOCH] = time.time()
            try:
                write_json_atomic(run_dir / RESULT_FILE, result, durable=False, for_people=False)
            except OSError:
                pass


def _end_tree(pid: int) -> None:
    """Freeze and kill process ``pid`` and all below it. psutil (20 ms of CPU, a fifth of a
    short version's child) is imported only here: most versions leave nothing to end."""
    import psutil

    from mlpipeline.executors.process_tree import end_processes

    try:
        end_processes(psutil.Process(pid), include_root=True)
    except psutil.Error:
        pass


def run_worker(run_dir: Path) -> None:
    """The worker's life: run the request in ``run_dir``, then end; never returns."""
    code = 1
    try:
        if _EARLY_STOPS:
            os.kill(os.getpid(), _EARLY_STOPS[0])  # asked to stop before it existed
        from mlpipeline.child import worker

        code = worker.main([str(run_dir)])
        _run_exit_functions(code)
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


EXIT_FUNCTIONS_S = 60.0
"""How long the script's exit functions may run, together, once its version's result is written."""
EXIT_FUNCTIONS_GRACE_S = 5.0
"""Past the deadline, how long an exit function that keeps catching the interruption has before
the worker ends without it."""


def _run_exit_functions(code: int = 0) -> None:
    """What the script registered with atexit runs, as at a normal exit (a tracker's last flush,
    say), but not the finalizers of objects (``weakref.finalize``), which a process about to end
    need not run: torch's alone take 50 ms, deregistering its operators one by one."""
    import weakref

    weakref.finalize._shutdown = True  # type: ignore[attr-defined]  # as the interpreter sets it at exit

    class CutShort(BaseException):  # not an Exception: a retry loop's `except Exception` lets it through
        pass

    deadline = time.monotonic() + EXIT_FUNCTIONS_S

    def cut_short(signum: int, frame: Any) -> None:
        if time.monotonic() > deadline + EXIT_FUNCTIONS_GRACE_S:
            _flush()  # one that swallowed even that: the result is in, the worker ends here
            os._exit(code)
        raise CutShort

    def said(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, CutShort):  # ours: said plainly, without our frame
            print(f"mlpipeline: the script's exit functions (atexit) ran past {EXIT_FUNCTIONS_S:g} s; cut short", file=sys.stderr)
        else:
            sys.__unraisablehook__(unraisable)

    # The version's result is in: an exit function that hangs must not hold its queue for ever.
    # Past the deadline each one still running is interrupted, once a second.
    previous, sys.unraisablehook = sys.unraisablehook, said
    alarm = signal.signal(signal.SIGALRM, cut_short)
    signal.setitimer(signal.ITIMER_REAL, EXIT_FUNCTIONS_S, 1.0)
    try:
        atexit._run_exitfuncs()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
        sys.unraisablehook = previous


def _flush() -> None:
    # The streams the worker set up, too, when the script replaced sys.stdout with its own.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _end_killed() -> None:
    """End as the tree this keeper killed, so that its exit status says killed; never returns."""
    _flush()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(1.0)
    os._exit(128 + signal.SIGKILL)


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
    """``python -m mlpipeline.child.keeper RUN_DIR``: keep one worker, and end as it ends."""
    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    request = ChildRequest.read(run_dir)
    keeper = Keeper(lifeline_from_environment(), request.heartbeat)
    worker = keeper.fork_worker(run_dir, lambda: run_worker(run_dir))
    # The daemon signals the whole process group: a stop is for the worker to handle.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    while True:
        ended, _ = keeper.watch()
        for pid, status, _ in ended:
            if pid == worker:
                end_like(status)


if __name__ == "__main__":
    main()
