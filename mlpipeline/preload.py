"""Preload: children forked from a process that has already imported the heavy modules.

``preload = ["torch"]`` in mlp.config makes the daemon start one preload server,
``python -m mlpipeline.preload SOCKET MODULE...``. It imports the modules (imports only:
nothing runs that could start thread pools or initialise CUDA before a fork), then serves
requests on a Unix socket. For each version the daemon sends the run folder, the extra
environment and the child's four pipe ends (stdout, stderr, events, lifeline) over the
socket; the server forks, and the fork becomes the version's keeper exactly as ``python -m
mlpipeline.keeper`` would: a session of its own, the pipes as its stdout and stderr, the
script imported afresh by its worker. The server tells the daemon the child's pid, and later how it ended.

The daemon never forks itself: the one fork is in a process that never ran user code.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

READY_TIMEOUT_S = 300.0


def _send(connection: socket.socket, message: Dict[str, Any]) -> None:
    connection.sendall((json.dumps(message) + "\n").encode("utf-8"))


def _receive(reader: Any) -> Optional[Dict[str, Any]]:
    line = reader.readline()
    return json.loads(line) if line else None


# -- the server ---------------------------------------------------------------------------


def serve(socket_path: str, modules: List[str]) -> None:
    failed: Dict[str, str] = {}
    for module in modules:
        try:
            __import__(module)
        except BaseException as exc:  # noqa: BLE001 - any failure is reported, the rest still load
            failed[module] = f"{type(exc).__name__}: {exc}"
    # What every fork runs anyway, imported once here: the child runner, the script API, and
    # psutil, with which a child ends what its version left running.
    import psutil  # noqa: F401
    import mlpipeline.child  # noqa: F401
    import mlpipeline.helper  # noqa: F401
    import mlpipeline.keeper  # noqa: F401
    import mlpipeline.process_tree  # noqa: F401

    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    # The daemon reads this line from our stdout to know we are ready, and what failed.
    print(json.dumps({"ready": True, "failed": failed}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        connection, _ = listener.accept()
        try:
            _fork_child(listener, connection)
        except OSError:
            connection.close()


def _exit_with_parent(parent: int) -> None:
    """The server must not outlive its daemon (a power cut of the daemon alone, kill -9)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


_connections: Set[socket.socket] = set()
"""The daemon's connections, one per child in flight; a fork closes them all (a child holding
another's connection would keep that one from ever seeing its end)."""
_connections_lock = threading.Lock()


def _fork_child(listener: socket.socket, connection: socket.socket) -> None:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 4)
    request = json.loads(message.decode("utf-8"))
    with _connections_lock:
        pid = os.fork()
        if pid == 0:
            listener.close()
            connection.close()
            for other in _connections:
                other.close()
            _become_child(request, fds)
        _connections.add(connection)
    for fd in fds:
        os.close(fd)
    _send(connection, {"pid": pid})
    # A thread per child waits for it and reports how it ended; the accept loop goes on.
    threading.Thread(target=_report_exit, args=(connection, pid), daemon=True).start()


def _report_exit(connection: socket.socket, pid: int) -> None:
    _, status, usage = os.wait4(pid, 0)
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
    with _connections_lock:
        _connections.discard(connection)
        connection.close()


def _become_child(request: Dict[str, Any], fds: List[int]) -> None:
    from mlpipeline.keeper import LIFELINE_FD_VARIABLE

    code = 1
    try:
        os.setsid()
        stdout, stderr, events, lifeline = fds
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.close(stdout)
        os.close(stderr)
        os.environ.update(request["env"])
        os.environ["MLPIPELINE_EVENTS_FD"] = str(events)
        os.environ[LIFELINE_FD_VARIABLE] = str(lifeline)
        os.chdir(request["cwd"])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        from mlpipeline import keeper

        keeper.main([request["run_dir"]])  # ends the process the way the version ended
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the fork must never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# -- the daemon's side --------------------------------------------------------------------


class PreloadClient:
    """The daemon's handle on its preload server."""

    def __init__(self, process: Any, socket_path: str, failed: Dict[str, str]) -> None:
        self.process = process
        self.socket_path = socket_path
        self.failed = failed

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, run_dir: str, cwd: str, env: Dict[str, str], fds: Tuple[int, int, int, int]) -> Tuple[int, socket.socket, Any]:
        """Ask for a child; returns its pid, the connection and a reader that will bring its end."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.socket_path)
        request = json.dumps({"run_dir": run_dir, "cwd": cwd, "env": env}).encode("utf-8")
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
            os.unlink(self.socket_path)
        except OSError:
            pass


def start_preload(modules: List[str], warn: Any) -> Optional[PreloadClient]:
    """The preload server for ``modules``, or None (with one warning) when it cannot start."""
    if not modules:
        return None
    import tempfile

    try:
        client = start_server(modules, tempfile.mkdtemp(prefix="mlpipeline-preload-"))
    except (OSError, ValueError) as exc:
        warn(f"preload could not start ({exc}); versions start the plain way")
        return None
    for module, error in client.failed.items():
        warn(f"preload: {module} failed to import ({error}); versions import it themselves")
    return client


def start_server(modules: List[str], folder: str) -> PreloadClient:
    """Start the preload server and wait until it has imported ``modules``."""
    import subprocess

    socket_path = os.path.join(folder, "preload.sock")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpipeline.preload", socket_path, *modules],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise OSError(f"the preload server exited with status {process.returncode} before it was ready")
    ready = json.loads(line)
    return PreloadClient(process, socket_path, ready.get("failed", {}))


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
