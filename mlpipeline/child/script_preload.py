"""A script imported once, its versions forked from it (``preload_scripts = true``).

Without it every worker imports its script afresh, which is what a script that builds 10,000
versions, or loads its data at the top, pays again for every version. With it the preload
server (preload_server.py) forks, for each script and fingerprint, one *script server*: a
process that imports the script, exactly as a worker would, and then serves that script's
versions as the preload server serves any: it forks each worker from the imported script and
is its keeper (keeper.py). The preload server itself still never runs user code.

A script server is refused (its versions import the script themselves, and the daemon says
why once) when the import fails, starts a thread (a fork copies only the thread that forks)
or initialises CUDA. It is retired, and a new one started, when the script's bytes or a
module it imported from beside it change.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.script_support.related_files import FileStamp, imported_below, stamps


RETIRE = b"retire\n"


def _why_not_forkable() -> Optional[str]:
    """Why this process, after the import, cannot fork its versions; None when it can."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        threads = 1
    if threads > 1:
        return f"its import started {threads - 1} thread(s), which a forked version would not have"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_initialized():
            return "its import initialised CUDA, which a forked version cannot use"
    except Exception:  # noqa: BLE001 - a torch without CUDA support
        pass
    return None


def _import_capturing(script: Dict[str, Any]) -> Tuple[Any, bytes, bytes, bytes]:
    """Import the script with its output kept aside: (module, source, stdout, stderr).

    The output is replayed by every version forked from the import, so each version's log
    shows what its import printed, as when it imports the script itself."""
    from mlpipeline.child.worker import load_script

    captured = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, stream in zip((1, 2), captured):
        os.dup2(stream.fileno(), fd)
    try:
        module, source = load_script(script["path"], script["label"], script["models_dir"], script["sha256"])
    finally:
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
    printed = []
    for stream in captured:
        stream.seek(0)
        printed.append(stream.read())
        stream.close()
    return module, source, printed[0], printed[1]


def serve_script(control: socket.socket, script: Dict[str, Any], socket_path: str, keeper_args: Tuple[Any, Any]) -> None:
    """The script server's life: import, tell the preload server, serve; never returns.

    ``control``: the preload server's end tells it ``{"ready": ..., "files": ...}`` or
    ``{"refused": why}``; it sends RETIRE (or closes) when this server's script went stale.
    """
    from mlpipeline.child import preload_server, worker
    from mlpipeline.child.keeper import Keeper

    try:
        os.chdir(script["cwd"])
        sys.argv = [script["path"]]
        try:
            module, source, printed_out, printed_err = _import_capturing(script)
        except worker.VersionFailure as failure:
            preload_server.send(control, {"refused": f"its import failed ({failure.error.message})"})
            os._exit(0)
        problem = _why_not_forkable()
        if problem is not None:
            preload_server.send(control, {"refused": problem})
            os._exit(0)
        worker.keep_imported(script["path"], script["sha256"], module, source)
        files = imported_below([os.path.dirname(script["path"]), script["models_dir"]], script["path"])
        keeper = Keeper(*keeper_args)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(socket_path)
        listener.listen(16)
        preload_server.send(control, {"ready": socket_path, "files": stamps(files)})
    except BaseException as exc:  # noqa: BLE001 - the fork must never return into the preload server
        try:
            preload_server.send(control, {"refused": f"{type(exc).__name__}: {exc}"})
        finally:
            os._exit(1)
    replay = (printed_out, printed_err)
    try:
        preload_server.serve_forks(keeper, listener, control, replay)
    finally:
        os._exit(0)


class ScriptServer:
    """The preload server's handle on one script server."""

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.control = control
        self.reader = control.makefile("r", encoding="utf-8")
        self.socket_path: Optional[str] = None  # once ready
        self.files: List[FileStamp] = []
        self.refused: Optional[str] = None
        self.told = False  # whether the daemon was told of the refusal

    def read_answer(self) -> None:
        """Read the server's one answer (it is readable); once, though both its end and its
        socket being readable may ask in the same look: read again, the socket says nothing."""
        if self.socket_path is not None or self.refused is not None:
            return
        line = self.reader.readline()
        try:
            answer = json.loads(line) if line else {}
        except ValueError:
            answer = {}
        if "ready" in answer:
            self.socket_path = str(answer["ready"])
            self.files = [tuple(stamp) for stamp in answer.get("files", [])]  # type: ignore[misc]
        else:
            self.refused = str(answer.get("refused") or "it ended before it was ready")

    def stale(self) -> bool:
        return stamps([path for path, _, _ in self.files]) != self.files

    def retire(self) -> None:
        try:
            self.control.sendall(RETIRE)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        self.reader.close()
        self.control.close()


def script_key(script: Dict[str, Any]) -> Tuple[str, str]:
    return (str(script["path"]), str(script["sha256"]))


def new_socket_path(folder: str) -> str:
    return str(Path(tempfile.mkdtemp(prefix="script-", dir=folder)) / "script.sock")
