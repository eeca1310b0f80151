"""Preload: children forked from a process that has already imported the heavy modules.

``preload = ["torch"]`` in mlp.config makes the daemon start one preload server,
``python -m mlpipeline.child.preload_server SOCKET HEARTBEAT MODULE...``. It imports the modules (imports
only: nothing runs that could start thread pools or initialise CUDA before a fork), then
serves requests on a Unix socket. For each version the daemon sends the run folder, the
extra environment and the child's three pipe ends (stdout, stderr, events) over the socket;
the server forks, and the fork becomes the version's worker exactly as under ``python -m
mlpipeline.child.keeper``: a session of its own, the pipes as its stdout and stderr, the script
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

from mlpipeline.executors.protocol import send_message as send
from mlpipeline.records.files import json_text


def serve(socket_path: str, heartbeat: Optional[Dict[str, Any]], modules: List[str], scripts: bool = False) -> None:
    failed: Dict[str, str] = {}
    for module in modules:
        try:
            __import__(module)
        except BaseException as exc:  # noqa: BLE001 - any failure is reported, the rest still load
            failed[module] = f"{type(exc).__name__}: {exc}"
    if _cuda_initialised():
        # A fork of a process with CUDA initialised cannot use the GPU: no version is forked
        # from here; the daemon says which module did it, and versions start the plain way.
        print(json_text({"ready": False, "refused": f"importing {', '.join(modules)} initialised CUDA, which a forked version cannot use"}), flush=True)
        os._exit(0)
    # What every fork runs anyway, imported once here: the child runner, the script API, and
    # psutil, with which a keeper ends what a version left running.
    import psutil  # noqa: F401

    import mlpipeline.child.worker  # noqa: F401
    import mlpipeline.helper  # noqa: F401
    import mlpipeline.executors.process_tree  # noqa: F401
    from mlpipeline.child.keeper import Keeper, lifeline_from_environment

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
    servers = ScriptServers(os.path.dirname(socket_path), heartbeat) if scripts else None
    serve_forks(keeper, listener, None, (b"", b""), servers)


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a torch without CUDA support
        return False


def serve_forks(keeper: Any, listener: socket.socket, control: Optional[socket.socket], replay: Tuple[bytes, bytes], servers: Optional["ScriptServers"] = None) -> None:
    """Fork a worker for each request on ``listener`` and tell its end; never returns.

    The preload server's loop, and a script server's (script_preload.py), whose ``control``
    says when to retire: it then takes no more requests and ends with its last worker."""
    connections: Dict[int, socket.socket] = {}  # worker pid -> the daemon's connection for it
    asked: Dict[socket.socket, int] = {}  # the connections on which a kill may still be asked
    retiring = False
    while True:
        watched: List[Any] = [] if retiring else [listener]
        if control is not None:
            watched.append(control)
        if servers is not None:
            watched += servers.starting()
        watched += list(asked)
        ended, readable = keeper.watch(watched)
        for pid, status, usage in ended:
            if servers is None or not servers.ended(pid):
                connection = connections.pop(pid, None)
                asked.pop(connection, None)  # type: ignore[arg-type]
                _report_end(connection, status, usage)
        if retiring and not keeper.workers:
            os._exit(0)
        for item in readable:
            if item in asked:
                # The daemon asks for a kill, or closed its end (it no longer waits for this
                # worker): either way the worker's tree ends here, its end told as usual.
                keeper.kill_worker(asked.pop(item))
            elif item is listener:
                connection, _ = listener.accept()
                try:
                    pid = _answer(keeper, connection, [listener, *([control] if control else []), *connections.values()], replay, servers)
                except (OSError, ValueError):
                    connection.close()
                    continue
                if pid is not None:
                    connections[pid] = connection
                    asked[connection] = pid
            elif item is control:
                try:
                    said = control.recv(64)
                except OSError:
                    said = b""
                if not said or said.startswith(b"retire"):
                    retiring = True
                    listener.close()
                    control.close()
                    control = None
            elif servers is not None:
                servers.answered(item)


def _answer(keeper: Any, connection: socket.socket, held: List[socket.socket], replay: Tuple[bytes, bytes], servers: Optional["ScriptServers"]) -> Optional[int]:
    """Serve one request: fork its worker (returns the pid), or send it to its script's server."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    request = json.loads(message.decode("utf-8"))
    note = None
    try:
        if servers is not None and request.get("script"):
            script = dict(request["script"], cwd=request["cwd"])
            redirect, note = servers.route(script, keeper, [connection, *held])
            if redirect is not None:
                send(connection, {"redirect": redirect})
                connection.close()
                return None

        def become_worker() -> None:
            # A worker holding another's connection would keep that one from ever seeing its end.
            for other in (connection, *held, *(servers.controls() if servers else ())):
                other.close()
            _become_worker(request, fds, replay)

        pid = keeper.fork_worker(Path(request["run_dir"]), become_worker)
    finally:
        for fd in fds:
            os.close(fd)
    send(connection, {"pid": pid, **({"note": note} if note else {})})
    return pid


class ScriptServers:
    """The preload server's script servers (script_preload.py), one a script and fingerprint."""

    def __init__(self, folder: str, heartbeat: Optional[Dict[str, Any]]) -> None:
        self.folder = folder
        self.heartbeat = heartbeat
        self.servers: Dict[Tuple[str, str], Any] = {}

    def starting(self) -> List[socket.socket]:
        return [server.control for server in self.servers.values() if server.pid and not server.socket_path and not server.refused]

    def controls(self) -> List[socket.socket]:
        return [server.control for server in self.servers.values()]

    def answered(self, control: socket.socket) -> None:
        for server in self.servers.values():
            if server.control is control:
                server.read_answer()

    def ended(self, pid: int) -> bool:
        """Whether ``pid`` was a script server; a ready one that ended is started anew when
        asked, one that ended before it was ready is refused for its fingerprint."""
        for key, server in list(self.servers.items()):
            if server.pid == pid:
                server.pid = None
                if not server.socket_path and not server.refused:
                    # It ended before it was ready: what it said (its refusal, or nothing) is in
                    # its socket already, though this end may have been seen first.
                    server.read_answer()
                if not server.refused:
                    server.close()
                    del self.servers[key]
                return True
        return False

    def route(self, script: Dict[str, Any], keeper: Any, held: List[socket.socket]) -> Tuple[Optional[str], Optional[str]]:
        """(the script server's socket to send the request to, or None to fork it here; a note
        for the daemon when the script's versions import it themselves, once)."""
        from mlpipeline.child.script_preload import script_key

        key = script_key(script)
        server = self.servers.get(key)
        if server is not None and server.socket_path and server.pid and not server.stale():
            return server.socket_path, None
        if server is None or server.socket_path:
            for other in [other for other in self.servers if other[0] == key[0]]:
                self.servers.pop(other).retire()  # an older fingerprint, or a stale import
            self._start(script, keeper, held)
            return None, None
        if server.refused and not server.told:
            server.told = True
            return None, f"preload_scripts: {script['label']} is imported by each of its versions: {server.refused}"
        return None, None

    def _start(self, script: Dict[str, Any], keeper: Any, held: List[socket.socket]) -> None:
        from mlpipeline.child.script_preload import ScriptServer, new_socket_path, script_key, serve_script

        socket_path = new_socket_path(self.folder)
        ours, theirs = socket.socketpair()
        lifeline = keeper.lifeline
        keep = {0, 1, 2, theirs.fileno(), *([lifeline] if lifeline is not None else [])}

        def become_script_server() -> None:
            _close_all_but(keep)
            serve_script(theirs, script, socket_path, (lifeline, self.heartbeat))

        try:
            pid = keeper.fork_worker(Path(socket_path).parent, become_script_server, keep=tuple(keep))
        finally:
            theirs.close()
        self.servers[script_key(script)] = ScriptServer(pid, ours)


def _close_all_but(keep: Any) -> None:
    """Close every file descriptor of this process but ``keep``: a script server holding a
    version's pipe or connection would keep that version from ever seeing its end."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _report_end(connection: Optional[socket.socket], status: int, usage: Any) -> None:
    if connection is None:
        return
    try:
        send(
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


def _become_worker(request: Dict[str, Any], fds: List[int], replay: Tuple[bytes, bytes] = (b"", b"")) -> None:
    from mlpipeline.child.keeper import run_worker

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
        for fd, printed in zip((1, 2), replay):
            if printed:  # what the script printed when its script server imported it
                os.write(fd, printed)
    except BaseException:  # noqa: BLE001 - the fork must never return into the server's loop
        os._exit(1)
    run_worker(Path(request["run_dir"]))  # never returns


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]), sys.argv[4:], scripts=sys.argv[3] == "1")
