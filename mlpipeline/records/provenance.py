"""Where a run came from: the git commit of the scripts' repository, the DVC data version when
the project keeps its data with DVC, and the software it ran on."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from mlpipeline.records.digest import sha256_hex
from mlpipeline.records.files import read_regular_bytes

GIT_TIMEOUT_S = 10.0

# Frameworks whose version a run record names when the script imported them.
_FRAMEWORKS = ("torch", "tensorflow", "keras", "numpy", "ray")


def find_repository(folder: Path) -> Optional[Path]:
    """The work tree holding ``folder``: the nearest folder upward with a ``.git`` entry."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def git_state(repository: Path, script: Path) -> Optional[Dict[str, Any]]:
    """The commit checked out in ``repository``, whether tracked files differ from it, and
    whether ``script`` itself is in it unchanged. None when git is not there or says no.

    ``dirty`` counts tracked files only: untracked files (outputs/, scratch) are not part of
    any commit, and the script, the one file that matters most, is judged on its own.
    """
    try:
        head = _git(repository, "rev-parse", "--verify", "-q", "HEAD")
        if head is None:
            return None  # a repository without commits
        changes = _git(repository, "status", "--porcelain", "--untracked-files=no")
        script_status = _git(repository, "status", "--porcelain", "--untracked-files=all", "--", str(script))
    except OSError:
        return None  # no git on this machine
    if changes is None or script_status is None:
        return None
    return {
        "commit": head.strip(),
        "dirty": bool(changes.strip()),
        "script_committed": not script_status.strip(),
        "repository": str(repository),
    }


def _git(repository: Path, *args: str) -> Optional[str]:
    import subprocess  # here: a version's child, which imports this module, never runs git

    try:
        done = subprocess.run(
            ["git", "-C", str(repository), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"),  # a status never takes the index lock from the user
        )
    except subprocess.TimeoutExpired:
        return None
    return done.stdout if done.returncode == 0 else None


DVC_FILE_LIMIT = 4 << 20
"""A dvc.lock or .dvc file larger than this is hashed, not read for its entries."""
_DVC_ENTRY = re.compile(r"^\s*(-\s+)?(path|md5|etag|checksum):\s*(.*?)\s*$")


def find_dvc_root(folder: Path) -> Optional[Path]:
    """The DVC project holding ``folder``: the nearest folder upward with a ``.dvc`` folder."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    return None


def dvc_state(root: Path, repository: Optional[Path]) -> Optional[Dict[str, Any]]:
    """The data version of the DVC project at ``root``: the sha256 of each of its dvc.lock and
    .dvc files (those git tracks, when it is in ``repository``; else those in ``root``), and
    the hash each of them gives each data path (a stage's deps and outs, a tracked file or
    folder). None when it has none. DVC's files are read as text, line by line: no YAML
    parser is needed, and no byte in them can stop a run."""
    names = None
    if repository is not None:
        listed = _git(repository, "ls-files", "-z", "--full-name", "--", f"{root}/*.dvc", f"{root}/**/dvc.lock", f"{root}/dvc.lock")
        if listed is not None:
            names = sorted({Path(os.path.realpath(repository / name)) for name in listed.split("\0") if name})
    if names is None:
        names = sorted([*root.glob("*.dvc"), *root.glob("dvc.lock")])
    files: Dict[str, str] = {}
    hashes: Dict[str, str] = {}
    for path in names:
        try:
            data = read_regular_bytes(path)
        except OSError:
            continue
        name = os.path.relpath(path, root)
        files[name] = sha256_hex(data)
        if len(data) <= DVC_FILE_LIMIT:
            # A path's bytes that are not UTF-8 are kept as they are (written escaped, \udcff).
            hashes.update(_dvc_hashes(data.decode("utf-8", "surrogateescape"), os.path.dirname(name)))
    return {"root": str(root), "files": files, "data": hashes} if files else None


def _dvc_hashes(text: str, folder: str) -> Dict[str, str]:
    """{data path: hash} of each list entry of a dvc.lock or .dvc file that names both; a path
    relative to the file's folder, as DVC's are, is given relative to the DVC root."""
    found: Dict[str, str] = {}
    entry: Dict[str, str] = {}

    def close() -> None:
        if entry.get("path") and entry.get("hash"):
            found[os.path.normpath(os.path.join(folder, entry["path"]))] = entry["hash"]
        entry.clear()

    for line in text.split("\n"):  # YAML's line ends only: a path may hold U+2028
        line = line.rstrip("\r")
        match = _DVC_ENTRY.match(line)
        if match is None:
            if line.lstrip().startswith("- "):
                close()  # another list's entry: whatever this one held is complete
            continue
        item, key, value = match.groups()
        if item:
            close()
        value = value.strip("'\"")
        entry["path" if key == "path" else "hash"] = value
    close()
    return found


def software_versions() -> Dict[str, str]:
    """Python's, mlpipeline's, and those of the frameworks this process has imported."""
    from mlpipeline import __version__

    versions = {"python": sys.version.split()[0], "mlpipeline": __version__}
    for name in _FRAMEWORKS:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if isinstance(version, str):
            versions[name] = version
    return versions


def describe_git(git: Optional[Dict[str, Any]]) -> Optional[str]:
    """``3f2c1e9d0a1b (dirty)`` for output blocks and messages."""
    if not git:
        return None
    notes = []
    if git.get("dirty"):
        notes.append("dirty")
    if not git.get("script_committed", True):
        notes.append("script not as committed")
    return git["commit"] + (f" ({', '.join(notes)})" if notes else "")


def describe_dvc(dvc: Any) -> Optional[str]:
    """``dvc.lock 9f86d081884c, data.dvc 2c26b46b68ff (3 data paths)`` for output blocks."""
    if not isinstance(dvc, dict) or not isinstance(dvc.get("files"), dict) or not dvc["files"]:
        return None
    files = ", ".join(f"{name} {str(digest)[:12]}" for name, digest in sorted(dvc["files"].items()))
    count = len(dvc["data"]) if isinstance(dvc.get("data"), dict) else 0
    return f"{files} ({count} data path{'' if count == 1 else 's'})"
