"""The lock that guards appends to a shared file: held by one thread of one process of one host
at a time, however many daemons, `cancel`s and hosts share the outputs folder.

It is ``flock`` on a lock file beside the guarded one, as filelock's Unix lock is, and is
compatible with it; written here because filelock 4 spends 220-290 us on each acquire and
release (resolving the path, making its folder, opening and closing the lock file, tracking
forks), against 5 us for what this does, and a daemon takes about ten locks a version. The
lock file stays open between acquires; reentrant within a thread, so a journal append can
check and write under one lock.
"""
from __future__ import annotations

import fcntl
import os
import threading
import weakref
from pathlib import Path
from types import TracebackType
from typing import Optional, Type


class FileLock:
    """An exclusive lock on the file at ``path`` (made, with its folder, when first taken)."""

    def __init__(self, path: "str | Path") -> None:
        self.path = str(path)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: Optional[int] = None
        self._opened_by: Optional[int] = None  # the pid that opened _fd
        self._closer: Optional[weakref.finalize] = None

    def acquire(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._depth == 0:
                self._lock_file()
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], value: Optional[BaseException], traceback: Optional[TracebackType]
    ) -> None:
        self.release()

    def close(self) -> None:
        """Close the lock file (a held lock is let go with it); done anyway when the lock is
        dropped, so that a reader made per command leaves no open file behind."""
        with self._thread_lock:
            self._fd = None
            if self._closer is not None:
                self._closer()

    def _lock_file(self) -> None:
        while True:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The lock file removed or replaced while this waited (by hand, by a cleaner of
            # hidden files): its holder and this one would hold two different files. Lock the
            # one that is there now.
            try:
                on_disk, held = os.stat(self.path), os.fstat(fd)
                if (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino):
                    return
            except FileNotFoundError:
                pass
            self.close()

    def _open(self) -> int:
        if self._fd is None or self._opened_by != os.getpid():
            # A process forked from the holder shares its open file, and with it the lock:
            # it opens the file for itself.
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            self._fd, self._opened_by = fd, os.getpid()
            self._closer = weakref.finalize(self, _close_in, fd, self._opened_by)
        return self._fd


def _close_in(fd: int, pid: int) -> None:
    """Close ``fd`` in the process that opened it (a forked child's copy is its parent's)."""
    if os.getpid() == pid:
        try:
            os.close(fd)
        except OSError:
            pass
