"""The outputs folder a daemon started with, told from whatever stands at its path later.

Removed, moved away with its project, or hidden by a disk unmounted from under it, the folder
is gone even where a path of that name still resolves (to the folder below the mount point,
or one a write has just made anew). Writing on would put the records where nobody finds
them, and the next run would redo the finished work: the daemon stops instead."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional, Tuple

GONE = "the outputs folder was removed, moved or replaced while this daemon ran (a disk unmounted, say)"


class OutputsFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity = _identity(path)

    def check(self) -> None:
        """Raise OSError when the folder at the path is no longer the one the daemon started with."""
        if _identity(self.path) != self._identity:
            raise OSError(errno.ENOENT, GONE, str(self.path))


def _identity(path: Path) -> Optional[Tuple[int, int]]:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino
