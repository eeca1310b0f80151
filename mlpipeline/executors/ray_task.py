"""What runs on a Ray node for one version, and the board through which its daemon speaks to it.

A version is one Ray task, :func:`run_version_on_node`: on the node Ray chose, it starts the
same child as the local executor (a keeper and its worker, through :class:`LocalExecutor`),
and streams back where it runs, every line and event the child sends, a beat every second,
and at last how the child ended. The task holds the write end of the keeper's lifeline, so
when Ray kills the task's worker process (its daemon died, its node is going), the keeper
ends the version's whole process tree.

The daemon speaks through a :class:`RunBoard`, an actor on the daemon's own node that dies
with the daemon: a signal for a run (stop, kill), or word that the daemon gave the run up
(its node fell silent, and the version is to resume elsewhere). A task that cannot hear the
board for :data:`DAEMON_SILENT_S` ends its version itself: nothing trains on unsupervised.
"""
from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import ray

from mlpipeline.executors.base import ChildRun
from mlpipeline.executors.local import LocalExecutor
from mlpipeline.executors.protocol import ENDED, EVENT, LINES, OUT, PLACED, ChildRequest, TaskEnd, cut_off_result, failed_result
from mlpipeline.records.files import read_regular_bytes

ABANDON = "abandon"
"""The board's word for a run its daemon gave up on: end it now, record nothing."""

BEAT_S = 1.0
"""How often a task says it is alive when its child is quiet."""

BATCH_ITEMS = 20000
"""The most lines and events one message carries."""

GATHER_S = 0.05
"""How long a task gathers what its child says before it sends it on: a line is at the daemon
this much later, and a child printing fast costs one message in this time, not one a read."""

DAEMON_SILENT_S = 6.0
"""Seconds without an answer from the board after which a task ends its version: less than
the daemon waits for a silent node (ray_executor.NODE_SILENT_S), so that a version the daemon
resumes elsewhere has ended here first."""

Message = Tuple[Any, ...]
"""What a task streams: protocol.py's PLACED, OUT and ENDED messages."""


@ray.remote(num_cpus=0, max_restarts=0)
class RunBoard:
    """The daemon's word to its running versions, kept until each asks for it."""

    def __init__(self) -> None:
        self._words: Dict[str, List[Any]] = {}
        self._news: Dict[str, asyncio.Event] = {}

    async def post(self, key: str, word: Any) -> None:
        self._words.setdefault(key, []).append(word)
        self._news.setdefault(key, asyncio.Event()).set()

    async def listen(self, key: str, timeout: float) -> List[Any]:
        """What was posted for ``key`` since the last call, waiting up to ``timeout`` for some."""
        news = self._news.setdefault(key, asyncio.Event())
        if not self._words.get(key):
            try:
                await asyncio.wait_for(news.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        news.clear()
        return self._words.pop(key, [])

    async def forget(self, key: str) -> None:
        self._words.pop(key, None)
        self._news.pop(key, None)


def node_identity() -> Dict[str, str]:
    """The node this task runs on, as the records name it."""
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_host": socket.gethostname(),
    }


SHARED_FOLDER_NEEDED = (
    'executor = "ray" needs the project folder on a file system every node mounts at the same path '
    "(NFS, say): see docs/cluster.md"
)


def shared_folder_problem(project_dir: str, probe: Optional[Tuple[str, str]]) -> Optional[str]:
    """Why this node does not see the daemon's project folder at the same path, or None.

    ``probe``: a file the daemon wrote just now in its outputs folder, and what it holds.
    """
    node = node_identity()
    where = f"node {node['node_ip']} (host {node['node_host']})"
    if not os.path.isdir(project_dir):
        return f"{where} does not see the project folder {project_dir}"
    if probe is not None:
        path, content = probe
        try:
            seen = read_regular_bytes(Path(path), len(content.encode("utf-8")) + 1).decode("utf-8", errors="replace")
        except OSError as exc:
            return f"{where} cannot read {path}, which the daemon wrote just now ({exc.strerror or exc})"
        if seen != content:
            return f"{where} sees another folder at {project_dir}: {path} does not hold what the daemon wrote"
    return None


@ray.remote(num_cpus=0, max_retries=0)
def check_node(project_dir: str, probe: Tuple[str, str]) -> Iterator[Optional[str]]:
    """Run on each node at the start: whether it sees the project folder the daemon sees.

    Its answer is streamed, as a version's lines are, so that the check also proves the node
    can stream to the daemon (a node whose token authentication differs cannot)."""
    problem = shared_folder_problem(project_dir, probe)
    yield f"{problem}; {SHARED_FOLDER_NEEDED}" if problem else None


@ray.remote(max_retries=0, retry_exceptions=False)
def run_version_on_node(
    request_fields: Dict[str, Any],
    env: Dict[str, str],
    work_dir: str,
    probe: Optional[Tuple[str, str]],
    key: str,
    board: Any,
    omp_threads: Optional[str],
) -> Iterator[Message]:
    """Run one version's child here, streaming what it says; see the module's description."""
    node = node_identity()
    problem = shared_folder_problem(work_dir, probe)
    if problem:
        message = f"{problem}; {SHARED_FOLDER_NEEDED}"
        yield (ENDED, TaskEnd(result=failed_result(message, "start"), returncode=None))
        return
    request = ChildRequest(**request_fields)
    if request.run_record is not None:
        # run.json names where the version ran: this node, not the daemon's host.
        request.run_record.update(host=node["node_host"], node_id=node["node_id"], node_ip=node["node_ip"])
    gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    env = dict(env, CUDA_VISIBLE_DEVICES=",".join(gpu_ids))
    # Ray sets OMP_NUM_THREADS=1 in its workers; the version gets what its daemon had, as locally.
    if omp_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp_threads
    said: "queue.Queue[Any]" = queue.Queue()
    executor = LocalExecutor(Path(work_dir))
    run: Optional[ChildRun] = None
    watch: Optional[_BoardWatch] = None
    try:  # from the child's start on: a cancel (KeyboardInterrupt) anywhere still ends it below
        run = executor.submit(
            request,
            on_lines=lambda stream, lines: said.put((LINES, stream, lines)),
            on_event=lambda event: said.put((EVENT, event)),
            env=env,
        )
        # The child's end wakes the loop below at once, as its lines do.
        threading.Thread(target=lambda done=run.done: (done.wait(), said.put(_ENDED)), daemon=True).start()
        watch = _BoardWatch(executor, run, board, key)
        yield (PLACED, dict(node, node_pid=run.pid, gpus=gpu_ids))
        watch.start()
        last_beat = time.monotonic()
        ended = False
        while not ended:
            items = _take(said, BEAT_S)
            ended = _ENDED in items
            items = [item for item in items if item is not _ENDED]
            if items or time.monotonic() - last_beat >= BEAT_S:
                yield (OUT, items)
                last_beat = time.monotonic()
        outcome = run.outcome
        assert outcome is not None
        result = outcome.result
        if watch.cut_off and not (result or {}).get("ok"):
            result = cut_off_result(watch.cut_off, "node")
        yield (ENDED, TaskEnd(result=result, returncode=outcome.returncode, cpu_s=outcome.cpu_s, peak_rss_bytes=outcome.peak_rss_bytes))
    finally:
        # Also when Ray cancels the task or the daemon stops reading: the child never outlives it.
        if watch is not None:
            watch.stop()
        if run is not None and not run.done.is_set():
            executor.stop(run, signal.SIGKILL)  # asked of its keeper, which outlives this task
            run.done.wait(30)


_ENDED = ("ended",)
"""Put after the child's last line and event: its output is all delivered (LocalExecutor joins
its readers before the run is done)."""


def _take(said: "queue.Queue[Any]", wait_s: float) -> List[Any]:
    """What the child said: the first item waited for up to ``wait_s``, then what else comes
    within GATHER_S of it, up to BATCH_ITEMS lines and events, so that a child that never stops
    printing still lets beats out. Lines of one stream that follow each other become one item:
    a version printing fast costs the daemon one message, not one per read of the pipe."""
    items: List[Any] = []
    count = 0
    try:
        first = said.get(timeout=wait_s)
        deadline = time.monotonic() + GATHER_S
        item: Any = first
        while True:
            if item is _ENDED:
                items.append(item)
                break
            if item[0] == LINES:
                count += len(item[2])
                if items and items[-1][0] == LINES and items[-1][1] == item[1]:
                    items[-1][2].extend(item[2])
                else:
                    items.append((LINES, item[1], list(item[2])))
            else:
                count += 1
                items.append(item)
            left = deadline - time.monotonic()
            if count >= BATCH_ITEMS or left <= 0:
                break
            item = said.get(timeout=left)
    except queue.Empty:
        pass
    return items


class _BoardWatch:
    """Listens on the board for one run: passes the daemon's signals to the child's tree, and
    ends it when the daemon gives the run up, is gone, or cannot be heard."""

    def __init__(self, executor: LocalExecutor, run: ChildRun, board: Any, key: str) -> None:
        self._executor = executor
        self._run = run
        self._board = board
        self._key = key
        self._stopped = threading.Event()
        self.cut_off: Optional[str] = None
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _listen(self) -> None:
        heard = time.monotonic()
        while not self._stopped.is_set() and not self._run.done.is_set():
            try:
                words = ray.get(self._board.listen.remote(self._key, BEAT_S), timeout=DAEMON_SILENT_S)
            except ray.exceptions.GetTimeoutError:
                words = None
            except Exception:  # noqa: BLE001 - the board is gone: so is its daemon
                self._end("its daemon is gone (its board cannot be reached)")
                return
            now = time.monotonic()
            if words is None or now - heard > DAEMON_SILENT_S:
                # No answer, or this process was frozen (a paused machine): the daemon may have
                # resumed the version elsewhere by now.
                self._end(f"its daemon could not be heard for {now - heard:.0f} s; ended here so that it never runs twice")
                return
            heard = now
            for word in words:
                if word == ABANDON:
                    self._end("its daemon gave this run up (its node was silent) and resumes the version elsewhere")
                    return
                self._executor.stop(self._run, int(word))

    def _end(self, why: str) -> None:
        self.cut_off = why
        self._executor.stop(self._run, signal.SIGKILL)
