"""The daemon's side of the preload server (child/preload_server.py): starting it, asking it
for a version's worker, and stopping it.

The server is a process of its own, ``python -m mlpipeline.child.preload_server``, which
imports the heavy modules once and forks each version's worker from them; this daemon holds
the write end of its lifeline and one connection per worker, on which the worker's end comes
back and a kill is asked (protocol.KILL_WORKER).
"""
from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.executors.protocol import LIFELINE_FD_VARIABLE, PRELOAD_FOLDER_PREFIX, receive_message
from mlpipeline.records.files import json_text


class PreloadClient:
    """The daemon's handle on its preload server."""

    def __init__(self, process: Any, socket_path: str, failed: Dict[str, str], lifeline: int) -> None:
        self.process = process
        self.socket_path = socket_path
        self.failed = failed
        self._lifeline = lifeline  # the write end; the server ends its workers when it closes

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(
        self, run_dir: str, cwd: str, env: Dict[str, str], fds: Tuple[int, int, int], script: Optional[Dict[str, Any]] = None
    ) -> Tuple[int, socket.socket, Any, Optional[str]]:
        """Ask for a child; returns its pid, the connection, a reader that will bring its end,
        and a note for the log. ``script`` (path, sha256, models_dir, label): fork it from
        that script's server (``preload_scripts``), which the server may send the request on to."""
        request = {"run_dir": run_dir, "cwd": cwd, "env": env, "script": script}
        answer, connection, reader = self._ask(self.socket_path, request, fds)
        if "redirect" in answer:
            try:
                answer, connection, reader = self._ask(str(answer["redirect"]), request, fds)
            except OSError:
                answer = {}
            if "pid" not in answer:
                connection.close()
                # The script server ended since the preload server looked: fork it here.
                answer, connection, reader = self._ask(self.socket_path, dict(request, script=None), fds)
        if "pid" not in answer:
            connection.close()
            raise OSError("the preload server did not start the child")
        return int(answer["pid"]), connection, reader, answer.get("note")

    @staticmethod
    def _ask(socket_path: str, request: Dict[str, Any], fds: Tuple[int, int, int]) -> Tuple[Dict[str, Any], socket.socket, Any]:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(socket_path)
            socket.send_fds(connection, [json_text(request).encode("utf-8")], list(fds))
            reader = connection.makefile("r", encoding="utf-8")
            answer = receive_message(reader) or {}
        except (OSError, ValueError) as exc:
            connection.close()
            raise OSError(f"the preload server did not answer ({exc})") from None
        if "redirect" in answer:
            connection.close()
        return answer, connection, reader

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
        folder = os.path.dirname(self.socket_path)
        if os.path.basename(folder).startswith(PRELOAD_FOLDER_PREFIX):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # its socket, and each script server's
        else:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass


def start_preload(modules: List[str], warn: Any, heartbeat: Optional[Dict[str, Any]] = None, scripts: bool = False) -> Optional[PreloadClient]:
    """The preload server for ``modules``, or None (with one warning) when it cannot start.

    ``heartbeat``: the daemon's, which the server watches as every keeper does (keeper.py).
    ``scripts``: it forks each script's versions from a script server (script_preload.py).
    """
    if not modules and not scripts:
        return None
    import tempfile

    remove_abandoned_folders(tempfile.gettempdir())
    try:
        client = start_server(modules, tempfile.mkdtemp(prefix=PRELOAD_FOLDER_PREFIX), heartbeat, scripts)
    except (OSError, ValueError) as exc:
        warn(f"preload could not start ({exc}); versions start the plain way")
        return None
    for module, error in client.failed.items():
        warn(f"preload: {module} failed to import ({error}); versions import it themselves")
    return client


ABANDONED_AFTER_S = 60.0
"""A preload folder without a live socket this old is a killed daemon's: younger, it may be one
whose server has not bound its socket yet."""


def remove_abandoned_folders(temp_dir: str) -> List[str]:
    """Remove the preload folders that daemons killed with SIGKILL left in ``temp_dir`` (a
    stopped daemon removes its own); returns them. A folder is abandoned when its socket
    refuses a connection (no server listens there), or when it has none and is older than
    ABANDONED_AFTER_S; a live server takes the probe as a request it cannot read."""
    import shutil
    import time

    removed: List[str] = []
    try:
        names = [name for name in os.listdir(temp_dir) if name.startswith(PRELOAD_FOLDER_PREFIX)]
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(temp_dir, name)
        try:
            if not os.path.isdir(folder) or os.path.islink(folder):
                continue
            age = time.time() - os.stat(folder).st_mtime
        except OSError:
            continue
        if age < ABANDONED_AFTER_S or _listening(os.path.join(folder, "preload.sock")):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            removed.append(folder)
    return removed


def _listening(socket_path: str) -> bool:
    """Whether a server accepts connections on ``socket_path``; one that cannot be told (not
    ours to connect to) counts as listening, and is left alone."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(socket_path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        probe.close()


def start_server(modules: List[str], folder: str, heartbeat: Optional[Dict[str, Any]] = None, scripts: bool = False) -> PreloadClient:
    """Start the preload server and wait until it has imported ``modules``."""
    import subprocess

    socket_path = os.path.join(folder, "preload.sock")
    lifeline_read, lifeline_write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlpipeline.child.preload_server", socket_path, json_text(heartbeat), "1" if scripts else "0", *modules],
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
    if not ready.get("ready"):
        process.wait()
        os.close(lifeline_write)
        raise ValueError(str(ready.get("refused") or "the preload server refused to serve"))
    return PreloadClient(process, socket_path, ready.get("failed", {}), lifeline_write)
