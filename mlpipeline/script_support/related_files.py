"""The files a model is made of: its script and the modules it imported from beside it.

Release 1.1a3.post8 copied these into each experiment's folder, so that the folder alone
says what code trained the model; ``Model.copy_related_files`` does it on request, and
before an ``Experiment``'s first hook.
"""
from __future__ import annotations

import os
import sys
from typing import Any, List, Optional, Sequence, Tuple

FileStamp = Tuple[str, int, int]
"""A module file a script imported from beside it: (path, mtime in ns, size). A listing or a
script server made with the file as it was goes stale when the stamp changes."""


def stamps(paths: Sequence[str]) -> List[FileStamp]:
    """The stamps of ``paths`` now; a file gone reads as (-1, -1)."""
    found = []
    for path in paths:
        try:
            status = os.stat(path)
            found.append((path, status.st_mtime_ns, status.st_size))
        except (OSError, ValueError):  # ValueError: a NUL in a path read back from a listing
            found.append((path, -1, -1))
    return found


def script_of(model: Any) -> Optional[str]:
    """The path of the script whose MODEL (or EXPERIMENT) is ``model``, else of its class's module."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", {})
        if namespace.get("MODEL") is model or namespace.get("EXPERIMENT") is model:
            path = namespace.get("__file__")
            if path:
                return os.path.abspath(path)
    module = sys.modules.get(type(model).__module__)
    path = getattr(module, "__file__", None)
    return os.path.abspath(path) if path else None


def related_files(script: str) -> List[str]:
    """``script`` first, then every imported module's file below the script's folder, sorted."""
    return [script, *imported_below([os.path.dirname(script)], script)]


def imported_below(folders: Sequence[str], script: str) -> List[str]:
    """The files of the modules imported so far that lie below one of ``folders``, sorted;
    ``script`` itself left out, and installed packages too (a virtual environment inside the
    project folder holds thousands of modules that are no part of the model)."""
    roots = [os.path.abspath(folder) for folder in folders if folder]
    script = os.path.abspath(script)
    # Python's own installation and the environment's (a conda `-p ./env`, a venv, inside the
    # project folder): unless the script itself lies there.
    installed = [
        os.path.abspath(prefix) for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}
        if not _below(script, os.path.abspath(prefix))
    ]
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        path = os.path.abspath(path)
        if f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path or f"{os.sep}__pypackages__{os.sep}" in path:
            continue
        if any(_below(path, prefix) for prefix in installed):
            continue
        if path != script and any(os.path.commonpath([path, root]) == root for root in roots) and os.path.isfile(path):
            found.add(path)
    return sorted(found)


def _below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def copy_related_files(model: Any, dst_dir: str) -> List[str]:
    """Copy ``model``'s script and its neighbours it imported into ``dst_dir``; the paths written."""
    script = script_of(model)
    if script is None:
        raise RuntimeError(f"the script that made this {type(model).__name__} is not known; set MODEL in a model script")
    root = os.path.dirname(script)
    destination = os.path.abspath(dst_dir)
    written = []
    for path in related_files(script):
        if os.path.commonpath([path, destination]) == destination:
            continue  # a copy made earlier, imported back
        target = os.path.join(destination, os.path.relpath(path, root))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        import shutil  # here: only Experiment models copy files, and every child imports this

        shutil.copyfile(path, target)
        written.append(target)
    return written
