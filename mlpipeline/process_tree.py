"""The processes of one version: sampled for peak memory, remembered so that all can be killed.

A version's child leads a process group, and signals go to the group. A process that leaves
the group (``setsid``) and is orphaned is no longer below the child either, so every process
ever seen in the tree is remembered, by psutil handle (pid plus start time: a reused pid is
never signalled by mistake).
"""
from __future__ import annotations

import os
import threading
from typing import Dict, List

import psutil

SAMPLE_INTERVAL_S = 0.5


class ProcessTree:
    """One version's process tree, rooted at its child process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_bytes = 0
        self._members: Dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        try:
            self._root = psutil.Process(pid)
            self._members[pid] = self._root
        except psutil.NoSuchProcess:
            self._root = None

    def sample(self) -> None:
        """Note every process now in the tree and add up their resident memory."""
        found: List[psutil.Process] = []
        if self._root is not None:
            try:
                found = [self._root] + self._root.children(recursive=True)
            except psutil.Error:
                found = []
        with self._lock:
            for process in found:
                self._members.setdefault(process.pid, process)
            members = list(self._members.values())
        total = 0
        for process in members:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    total += process.memory_info().rss
            except psutil.Error:
                continue
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group and to every member ever seen that still runs."""
        self.sample()  # a fresh look first: what started since the last sample is signalled too
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
        with self._lock:
            members = list(self._members.values())
        for process in members:
            try:
                if process.is_running():
                    process.send_signal(signum)
            except psutil.Error:
                continue


def sample_until(tree: ProcessTree, done: threading.Event) -> None:
    """Sample ``tree`` every SAMPLE_INTERVAL_S until ``done`` is set (a thread's body)."""
    while not done.is_set():
        tree.sample()
        done.wait(SAMPLE_INTERVAL_S)
