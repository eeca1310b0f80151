"""The pids of a process's children, read from /proc without psutil: a keeper asks it after
every version, and most versions leave nothing behind, so the keeper (a new interpreter per
version without a preload) imports psutil only when there is something to end."""
from __future__ import annotations

import os
from typing import List


def children_of(pid: int) -> List[int]:
    """The pids of ``pid``'s children, from /proc's list of each of its threads' children (Linux):
    the cost is the family's size, not the machine's (psutil reads every process on the host)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []  # ended meanwhile
    except OSError:
        return _children_by_psutil(pid)
    children: List[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                children.extend(int(child) for child in handle.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{task}"):
                continue  # a thread that ended meanwhile
            return _children_by_psutil(pid)  # a kernel without these lists
        except OSError:
            return _children_by_psutil(pid)
    return children


def _children_by_psutil(pid: int) -> List[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []
