"""Where a run came from: the git commit of the scripts' repository, and the software it ran on."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

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
