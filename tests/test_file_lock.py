"""The lock that guards every shared append: one holder among processes and threads, reentrant."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import REPO

from mlpipeline.records.file_lock import FileLock

COUNTER = """
import sys
from mlpipeline.records.file_lock import FileLock
lock, counter = FileLock(sys.argv[1]), sys.argv[2]
for _ in range(int(sys.argv[3])):
    with lock:
        with lock:  # reentrant: a journal append checks and writes under one lock
            value = int(open(counter).read())
            open(counter, "w").write(str(value + 1))
"""


def test_processes_and_threads_take_turns(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    lock_path = tmp_path / "locks" / ".counter.lock"  # its folder is made when first taken
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen([sys.executable, "-c", COUNTER, str(lock_path), str(counter), "300"], env=env) for _ in range(3)
    ]
    lock = FileLock(lock_path)

    def count() -> None:
        for _ in range(300):
            with lock:
                counter.write_text(str(int(counter.read_text()) + 1))

    threads = [threading.Thread(target=count) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [process.wait(timeout=60) for process in processes] == [0, 0, 0]
    assert counter.read_text() == str(5 * 300)  # no increment lost to a race


def test_a_held_lock_holds_off_other_openers_until_the_last_release(tmp_path: Path) -> None:
    path = tmp_path / ".x.lock"
    lock = FileLock(path)

    def free() -> bool:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with lock:
        with lock:
            assert not free()
        assert not free()  # the inner release is not the last
    assert free()
    lock.close()
    with lock:  # taken again after a close: the file is opened anew
        assert not free()
