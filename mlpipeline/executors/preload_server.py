"""Preload: children forked from a process that has already imported the heavy modules.

``preload = ["torch"]`` in mlp.config makes the daemon start one preload server,
``python -m mlpipeline.executors.preload_server SOCKET HEARTBEAT MODULE...``. It imports the modules (imports
only: nothing runs that could start thread pools or initialise CUDA before a fork), then
serves requests on a Unix socket. For each version the daemon sends the run folder, the
extra environment and the child's three pipe ends (stdout, stderr, events) over the socket;
the server forks, and the fork becomes the version's worker exactly as under ``python -m
mlpipeline.executors.keeper``: a session of its own, the pipes as its stdout and stderr, the script
imported afresh. The server tells the daemon the worker's pid, and later how it ended.

The server is its workers' keeper (keeper.py): it watches the daemon's lifeline and
heartbeat, and ends what a worker leaves behind. One keeper for all workers, rather than one
forked per version, because every fork and every end of a process with torch in memory
costs about 12 ms. It is one thread, so that a fork never copies a lock another thread holds.

The daemon never forks itself: the one fork is in a process that never ran user code.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.records.files import json_text

READY_TIMEOUT_S = 300.0


def _send(connection: socket.socket, message: Dict[str, Any]) -> None:
    connection.sendall((json_text(message) + "\n").encode("utf-8"))


def _receive(reader: Any) -> Optional[Dict[str, Any]]:
    line = reader.readline()
    return json.loads(line) if line else None


# -- the server ---------------------------------------------------------------------------


def serve(socket_path: str, heartbeat: Optional[Dict[str, Any]], modules: List[str]) -> None:
    failed: Dict[str, str] = {}
    for module in modules:
        try:
            __import__(module)
        except BaseException as exc:  # noqa: BLE001 - any failure is reported, the rest still load
            failed[module] = f"{type(exc).__name__}: {exc}"
    # What every fork runs anyway, imported once here: the child runner, the script API, and
    # psutil, with which a keeper ends what a version left running.
    import psutil  # noqa: F401

    import mlpipeline.executors.worker  # noqa: F401
    import mlpipeline.helper  # noqa: F401
    import mlpipeline.executors.process_tree  # noqa: F401
    from mlpipeline.executors.keeper import Keeper, lifeline_from_environment

    keeper = Keeper(lifeline_from_environment(), heartbeat)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    # The daemon reads this line from our stdout to know we are ready, and what failed.
    try:
        print(json_text({"ready": True, "failed": failed}), flush=True)
    except OSError:
        # The daemon is gone (stopped while the modules loaded): nobody to serve, and a
        # traceback here would land on its terminal after it had exited.
        os._exit(0)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    connections: Dict[int, socket.socket] = {}  # worker pid -> the daemon's connection for it
    while True:
        ended, readable = keeper.watch([listener])
        for pid, status, usage in ended:
            _report_end(connections.pop(pid, None), status, usage)
        if listener in readable:
            connection, _ = listener.accept()
            try:
                pid = _fork_worker(keeper, listener, connection, connections)
            except OSError:
                connection.close()
                continue
            connections[pid] = connection


def _fork_worker(keeper: Any, listener: socket.socket, connection: socket.socket, connections: Dict[int, socket.socket]) -> int:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    request = json.loads(message.decode("utf-8"))

    def become_worker() -> None:
        # A worker holding another's connection would keep that one from ever seeing its end.
        for held in (listener, connection, *connections.values()):
            held.close()
        _become_worker(request, fds)

    try:
        pid = keeper.fork_worker(Path(request["run_dir"]), become_worker)
    finally:
        for fd in fds:
            os.close(fd)
    _send(connection, {"pid": pid})
    return pid


def _report_end(connection: Optional[socket.socket], status: int, usage: Any) -> None:
    if connection is None:
        return
    try:
        _send(
            connection,
            {
                "returncode": os.waitstatus_to_exitcode(status),
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
            },
        )
    except OSError:
        pass
    connection.close()


def _become_worker(request: Dict[str, Any], fds: List[int]) -> None:
    from mlpipeline.executors.keeper import run_worker

    try:
        os.setsid()
        stdout, stderr, events = fds
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.close(stdout)
        os.close(stderr)
        os.environ.update(request["env"])
        os.environ["MLPIPELINE_EVENTS_FD"] = str(events)
        os.chdir(request["cwd"])
        sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    except BaseException:  # noqa: BLE001 - the fork must never return into the server's loop
        os._exit(1)
    run_worker(Path(request["run_dir"]))  # never returns


# -- the daemon's side --------------------------------------------------------------------


class PreloadClient:
    """The daemon's handle on its preload server."""

    def __init__(self, process: Any, socket_path: str, failed: Dict[str, str], lifeline: int) -> None:
        self.process = process
        self.socket_path = socket_path
        self.failed = failed
        self._lifeline = lifeline  # the write end; the server ends its workers when it closes

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, run_dir: str, cwd: str, env: Dict[str, str], fds: Tuple[int, int, int]) -> Tuple[int, socket.socket, Any]:
        """Ask for a child; returns its pid, the connection and a reader that will bring its end."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.socket_path)
        request = json_text({"run_dir": run_dir, "cwd": cwd, "env": env}).encode("utf-8")
        socket.send_fds(connection, [request], list(fds))
        reader = connection.makefile("r", encoding="utf-8")
        answer = _receive(reader)
        if not answer or "pid" not in answer:
            connection.close()
            raise OSError("the preload server did not start the child")
        return int(answer["pid"]), connection, reader

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.process.kill()
        try:
            os.close(self._lifeline)
        except OSError:
            pass
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


def start_preload(modules: List[str], warn: Any, heartbeat: Optional[Dict[str, Any]] = None) -> Optional[PreloadClient]:
    """The preload server for ``modules``, or None (with one warning) when it cannot start.

    ``heartbeat``: the daemon's, which the server watches as every keeper does (keeper.py).
    """
    if not modules:
        return None
    import tempfile

    try:
        client = start_server(modules, tempfile.mkdtemp(prefix="mlpipeline-preload-"), heartbeat)
    except (OSError, ValueError) as exc:
        warn(f"preload could not start ({exc}); versions start the plain way")
        return None
    for module, error in client.failed.items():
        warn(f"preload: {module} failed to import ({error}); versions import it themselves")
    return client


def start_server(modules: List[str], folder: str, heartbeat: Optional[Dict[str, Any]] = None) -> PreloadClient:
    """Start the preload server and wait until it has imported ``modules``."""
    import subprocess

    from mlpipeline.executors.keeper import LIFELINE_FD_VARIABLE

    socket_path = os.path.join(folder, "preload.sock")
    lifeline_read, lifeline_write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlpipeline.executors.preload_server", socket_path, json_text(heartbeat), *modules],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            pass_fds=(lifeline_read,),
            env=dict(os.environ, **{LIFELINE_FD_VARIABLE: str(lifeline_read)}),
        )
    except BaseException:
        os.close(lifeline_write)
        raise
    finally:
        os.close(lifeline_read)
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
    except BaseException:
        # Stopped while the server imports (a Ctrl-C in the daemon's start-up): it would serve nobody.
        process.kill()
        process.wait()
        os.close(lifeline_write)
        raise
    if not line:
        process.wait()
        os.close(lifeline_write)
        raise OSError(f"the preload server exited with status {process.returncode} before it was ready")
    ready = json.loads(line)
    return PreloadClient(process, socket_path, ready.get("failed", {}), lifeline_write)


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:])
