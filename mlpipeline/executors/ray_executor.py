"""Runs each version as one Ray task on a Ray cluster: ``executor = "ray"`` in mlp.config.

One daemon drives the whole cluster. The journal stays the one source of truth: every task
has ``max_retries=0``, and a task that ends without its child's end (its node died, or fell
silent) is a cut-off the daemon resumes from the version's checkpoint, wherever Ray places it
next. The task itself is in ray_task.py; this is the daemon's side: connecting, checking that
every node sees the project folder, placing tasks with the GPUs their versions ask for,
following their streams, and passing stops and kills on.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import ray

from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.local import deliver
from mlpipeline.executors.protocol import ENDED, LINES, OUT, PLACED, cut_off_result, describe_node, failed_result
from mlpipeline.executors.ray_task import ABANDON, RunBoard, check_node, run_version_on_node
from mlpipeline.records.files import remove_quietly

NODE_SILENT_S = 10.0
"""Seconds without a word from a running task after which its node counts as lost: the
version is recorded cut off and resumed elsewhere. Ray itself notices a silent node only
after about a minute, and the daemon may never hear of it."""

CONNECT_TIMEOUT_S = 5.0
"""How long the address of a cluster may take to answer before the daemon gives up on it."""

TASK_RUNTIME_ENV = {"env_vars": {"RAY_kill_child_processes_on_worker_exit": "false"}}
"""The daemon's job's runtime environment. Ray kills a worker's child processes with SIGKILL
when the worker exits (its driver died, the task was cancelled). A task's child is the
version's keeper, whose whole purpose is to outlive it and end everything below it once its
lifeline closes: killed first, it would leave the version's own processes orphaned and
running. So the job's workers leave their children to the keeper. (Set for the job, not per
task: a task's own runtime_env costs about 50 ms a version.)"""

NODE_CHECK_TIMEOUT_S = 60.0
"""How long each node has to show, at the start, that it sees the project folder."""

NODE_GONE_GRACE_S = 30.0
"""How long a task may wait for GPUs that no live node has (their node is restarting, say)
before it is cut off; tried again then, it fails with the reason if they are still missing."""

NODE_GPUS_TTL_S = 2.0

CLUSTER_GONE_S = 5.0
"""How long the address the daemon joined (the head's GCS) may go unanswered before the
cluster counts as gone. Without its GCS a cluster starts nothing, and Ray itself ends a driver
whose GCS has been away for 60 s, with no word of the daemon's; so the daemon ends its runs and
says so first. Long enough for a connection refused in passing; a GCS that is restarted (a head
with fault tolerance) comes back within it."""

CLUSTER_CHECK_S = 1.0


class ClusterUnavailable(Exception):
    """The Ray cluster cannot be used; the message says which address was tried, and why."""


def cluster_address(configured: Optional[str]) -> Tuple[str, str]:
    """The address to connect to, and where it came from: mlp.config, RAY_ADDRESS, or "auto"."""
    if configured:
        return configured, "from ray_address in mlp.config"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "from RAY_ADDRESS"
    return "auto", "the default: the cluster `ray start` began on this machine"


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # and an empty SETTINGS frame


def _speaks_grpc(host: str, port: int) -> bool:
    """Whether what listens at ``host:port`` answers as a gRPC server (Ray's GCS is one): sent
    HTTP/2's preface, it sends a SETTINGS frame back at once. With TLS on (RAY_USE_TLS) the
    question cannot be asked in plain text: True. OSError when nothing can be connected to."""
    if os.environ.get("RAY_USE_TLS", "0") not in ("", "0", "false", "False"):
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as connection:
        connection.sendall(_HTTP2_PREFACE)
        header = b""
        try:
            while len(header) < 9:
                part = connection.recv(9 - len(header))
                if not part:
                    break
                header += part
        except socket.timeout:
            return False
    return len(header) == 9 and header[3] == 0x04  # the frame's type: SETTINGS


def connect(configured: Optional[str]) -> str:
    """Join the Ray cluster as its driver; returns the address joined. ClusterUnavailable if it
    cannot be reached or refuses this daemon (a token it does not know)."""
    address, source = cluster_address(configured)
    if address.startswith("ray://"):
        raise ClusterUnavailable(
            f"{address}, {source}, is a Ray Client address; run mlpipeline on a node of the cluster and give "
            "the cluster's address (host:port), or \"auto\""
        )
    from ray._private.services import canonicalize_bootstrap_address

    if address != "auto":
        host, colon, port = address.rpartition(":")
        if not colon or not host or not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            # Said here: Ray's own words for these are int()'s, or a traceback of its logger.
            raise ClusterUnavailable(
                f"no Ray cluster at {address}, {source}: give the head's host:port, the port a number from 1 to 65535 "
                "(`ray start --head` prints it), or \"auto\""
            )
    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as exc:
        raise ClusterUnavailable(f"no Ray cluster at {address}, {source}: {exc}") from None
    if resolved is None:
        raise ClusterUnavailable(f"no Ray cluster at {address}, {source}: start one with `ray start --head`")
    named = address if address == resolved else f"{address} (that is {resolved})"
    host, _, port = resolved.rpartition(":")
    try:
        speaks = _speaks_grpc(host, int(port))
    except socket.timeout:
        raise ClusterUnavailable(f"no Ray cluster answers at {named}, {source}, within {CONNECT_TIMEOUT_S:g} s") from None
    except (OSError, ValueError) as exc:
        raise ClusterUnavailable(f"no Ray cluster answers at {named}, {source}: {getattr(exc, 'strerror', None) or exc}") from None
    if not speaks:
        # ray.init would wait for it for ever, deaf to Ctrl-C.
        raise ClusterUnavailable(
            f"no Ray cluster answers at {named}, {source}: something listens there, but it does not speak Ray's "
            "protocol (gRPC); is that the port `ray start --head` printed?"
        )
    # Ray says "token authentication is enabled" through its logger when it turns it on: not news here.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    token = use_token_if_present()
    try:
        ray.init(
            address=resolved, log_to_driver=False, logging_level=logging.WARNING, namespace="mlpipeline", runtime_env=TASK_RUNTIME_ENV
        )
    except Exception as exc:  # noqa: BLE001 - Ray's errors differ by version; all mean "not usable"
        hint = (
            "this daemon sent the token Ray found here; the cluster's may differ"
            if token
            else "no Ray token was found here; a cluster started with token authentication needs the token of "
            "`ray start` in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
        )
        raise ClusterUnavailable(f"the Ray cluster at {named}, {source}, could not be joined ({hint}): {_first_line(exc)}") from None
    return resolved


def use_token_if_present() -> bool:
    """Use Ray's token authentication when a token is at hand, as `ray start` and the `ray` CLI
    do, and whether it is on. ``ray.init`` itself turns it on only for a cluster it finds by
    "auto", not for an address it is given: a daemon configured with ``ray_address`` would send
    no token to a cluster that requires one."""
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

        return maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except ImportError:  # a Ray without token authentication
        return False


@dataclass
class RayTask:
    """What the daemon holds for one run (its ``handle``): the key of its words on the board,
    its task's stream, when the task last spoke, and since when it has waited for GPUs that no
    live node has. Dropped (``handle`` None) once the run has ended or been given up."""

    key: str
    stream: Any = None
    heard: Optional[float] = None
    gpus_missing_since: Optional[float] = None


class RayExecutor(Executor):
    """Each child as a Ray task on the node Ray picks, with ``run.gpus`` as its ``num_gpus``."""

    queues_children = True

    def __init__(self, work_dir: Path, outputs_dir: Path, address: Optional[str]) -> None:
        super().__init__(work_dir)
        self.address = connect(address)
        self.where = f"the Ray cluster at {self.address}"
        self._lock = threading.Lock()  # guards each run's handle
        self._node_gpus: Tuple[float, List[float]] = (0.0, [])
        self._closed = threading.Event()
        self._probe: Optional[Tuple[Path, str]] = None
        self.lost: Optional[str] = None
        """Why no version can run here any more (the cluster is gone), once that is so."""
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            # On the daemon's own node, so that it lives exactly as long as the daemon.
            self._board = RunBoard.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
            self.check_shared_folder(outputs_dir)
            self._read_node_gpus()
        except BaseException:
            self._remove_probe()
            ray.shutdown()
            raise
        threading.Thread(target=self._watch_nodes, daemon=True).start()
        # A thread of its own: the nodes' watch asks the GCS, and such a call waits for a GCS that is gone.
        threading.Thread(target=self._watch_cluster, daemon=True).start()

    # -- the cluster ---------------------------------------------------------------------

    def live_nodes(self) -> List[Dict[str, Any]]:
        return [node for node in ray.nodes() if node.get("Alive")]

    def node_gpus(self) -> List[float]:
        """How many GPUs each live node has (a node started with ``--num-gpus``, or found), as
        the nodes' watch last read them: the daemon's loop never asks the GCS itself, since a
        call waits a minute for a GCS that is gone, and then Ray ends the process."""
        return self._node_gpus[1]

    def _read_node_gpus(self) -> None:
        checked, _ = self._node_gpus
        if time.monotonic() - checked > NODE_GPUS_TTL_S:
            counts = [float(node.get("Resources", {}).get("GPU", 0.0)) for node in self.live_nodes()]
            self._node_gpus = (time.monotonic(), counts)

    def check_shared_folder(self, outputs_dir: Path) -> None:
        """Every live node must see the project folder at the daemon's path: a probe file is
        written in the outputs folder and read back on each node. It stays while the daemon
        runs, and each version's task reads it too, on nodes that join later as well."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        content = uuid.uuid4().hex
        probe = outputs_dir / f".ray-probe-{content[:12]}"
        probe.write_text(content, encoding="utf-8")
        self._probe = (probe, content)
        nodes = self.live_nodes()
        checks = [
            check_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
                str(self.work_dir), (str(probe), content)
            )
            for node in nodes
        ]
        ray.wait(checks, num_returns=len(checks), timeout=NODE_CHECK_TIMEOUT_S)
        problems = [problem for problem in (self._node_problem(node, check) for node, check in zip(nodes, checks)) if problem]
        if problems:
            raise ClusterUnavailable("; ".join(problems))

    @staticmethod
    def _node_problem(node: Dict[str, Any], check: Any) -> Optional[str]:
        ready, _ = ray.wait([check], timeout=0)
        if not ready:
            ray.cancel(check, force=True)
            return (
                f"node {node.get('NodeManagerAddress')} sent nothing back within {NODE_CHECK_TIMEOUT_S:g} s (is it "
                "overloaded, or does it use another Ray token than this daemon?)"
            )
        try:
            return ray.get(next(check))
        except ray.exceptions.RayError as exc:
            return f"node {node.get('NodeManagerAddress')} could not check the folder ({_first_line(exc)})"

    # -- the executor contract ---------------------------------------------------------------

    def _start(self, run: ChildRun) -> None:
        key = uuid.uuid4().hex
        if self.lost is not None:
            # The cluster went since the daemon last looked: ended as the runs it had were.
            with self._lock:
                run.handle = RayTask(key)
            self._end_lost(run)
            return
        request = run.request.to_json()
        request["check_sha256"] = True  # the node reads the script through the shared folder
        probe = (str(self._probe[0]), self._probe[1]) if self._probe else None
        try:
            stream = run_version_on_node.options(num_cpus=1, num_gpus=run.gpus).remote(
                request, run.env, str(self.work_dir), probe, key, self._board, os.environ.get("OMP_NUM_THREADS")
            )
        except Exception as exc:  # noqa: BLE001 - recorded as a version that could not start
            raise OSError(f"Ray did not take its task ({_first_line(exc)})") from None
        with self._lock:
            run.handle = RayTask(key, stream)
        threading.Thread(target=self._follow, args=(run, stream), daemon=True).start()
        if self.lost is not None:
            self._end_lost(run)  # the cluster went while the task was handed over

    def _signal(self, run: ChildRun, signum: int) -> None:
        with self._lock:
            task: Optional[RayTask] = run.handle
        if task is None:
            return
        if run.placement is None:
            # Still waiting for a node: it never starts (should it start meanwhile, the board has the word).
            _cancel(task.stream, force=False)
        self._board.post.remote(task.key, int(signum))

    def close(self) -> None:
        """Wait a moment for the stopped tasks to end, then leave the cluster."""
        deadline = time.monotonic() + 10
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closed.set()
        self._remove_probe()
        ray.shutdown()

    # -- the cluster's own end ---------------------------------------------------------------

    def _watch_cluster(self) -> None:
        host, _, port = self.address.rpartition(":")
        answered = time.monotonic()
        while not self._closed.wait(CLUSTER_CHECK_S):
            try:
                socket.create_connection((host, int(port)), timeout=CLUSTER_CHECK_S * 2).close()
                answered = time.monotonic()
            except (OSError, ValueError):
                if time.monotonic() - answered >= CLUSTER_GONE_S:
                    self._cluster_gone(time.monotonic() - answered)
                    return

    def _cluster_gone(self, silent_s: float) -> None:
        """End every run at once as cut off, to resume in a later session: nothing more can
        start on this cluster, and what runs on its nodes is told to end (the word goes to the
        tasks straight, not through the GCS) or ends with its node."""
        # Set first: the daemon resumes nothing of what ends below, and starts nothing more.
        self.lost = f"the Ray cluster at {self.address} is gone (it has not answered for {silent_s:.0f} s)"
        for run in self.running:
            self._end_lost(run)

    def _end_lost(self, run: ChildRun) -> None:
        with self._lock:
            task: Optional[RayTask] = run.handle
        if task is None:
            return  # being started: _start ends it
        # Ended first: the cancel below breaks the task's stream, whose reader would otherwise
        # end the run as a failure of its own ("exited with status None"), which -u skips.
        message = f"{self.lost}; cut off, to resume from its checkpoint"
        self._end(run, None, None, None, cut_off_result(message, "node"), abandoned=True)
        if task.stream is not None:
            try:
                self._board.post.remote(task.key, int(signal.SIGKILL))
            except Exception:  # noqa: BLE001 - the board went with the cluster: the task ends with its node
                pass
            _cancel(task.stream, force=True)

    def _remove_probe(self) -> None:
        if self._probe is not None:
            remove_quietly(self._probe[0])
            self._probe = None

    # -- inside ------------------------------------------------------------------------

    def _follow(self, run: ChildRun, stream: Any) -> None:
        """Read the task's stream until its end, or until it breaks (its node died)."""
        try:
            for reference in stream:
                message = ray.get(reference)
                with self._lock:
                    if run.handle is None:
                        return  # given up (its node was silent): what it says now is not recorded
                    run.handle.heard = time.monotonic()
                    if message[0] == PLACED:
                        run.started = time.monotonic()  # a timeout counts from here, not from the queue
                        self._place(run, message[1])
                kind = message[0]
                if kind == OUT:
                    for item in message[1]:
                        if item[0] == LINES:
                            deliver(run.on_lines, item[1], item[2])
                        else:
                            deliver(run.on_event, item[1])
                elif kind == ENDED:
                    ended = message[1]
                    self._end(run, ended.get("returncode"), ended.get("cpu_s"), ended.get("peak_rss_bytes"), ended.get("result"))
                    return
            self._end(run, None, None, None, self._broken(run, "its task ended without saying how"))
        except ray.exceptions.TaskCancelledError:
            self._end(run, None, None, None, None)
        except ray.exceptions.RayError as exc:
            self._end(run, None, None, None, self._lost(run, exc))
        except BaseException:  # noqa: BLE001 - Ray is shut down under a thread still reading
            if not self._closed.is_set():
                raise

    def _lost(self, run: ChildRun, exc: BaseException) -> Dict[str, Any]:
        """The result of a run whose stream broke: cut off when its node is gone (to resume
        elsewhere), failed otherwise (Ray's memory monitor killed it, its task's own code
        failed): a resume would meet the same end."""
        if isinstance(exc, ray.exceptions.NodeDiedError) or (run.placement and not self._node_alive(run.placement)):
            return self._broken(run, f"{type(exc).__name__}: {_first_line(exc)}")
        cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
        what = f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(exc).__name__}: {_first_line(exc)}"
        where = f" on node {describe_node(run.placement)}" if run.placement else ""
        return failed_result(f"its Ray task ended{where} without its version's end ({what})", "node")

    def _node_alive(self, placement: Dict[str, Any]) -> bool:
        try:
            return any(node["NodeID"] == placement.get("node_id") for node in self.live_nodes())
        except Exception:  # noqa: BLE001 - the cluster cannot say: count the node as gone
            return False

    def _broken(self, run: ChildRun, what: str) -> Dict[str, Any]:
        """The result of a run whose node was lost: cut off, to resume."""
        where = f"node {describe_node(run.placement)}" if run.placement else "its node"
        message = f"{where} was lost mid-run ({what}); cut off, to resume from its checkpoint"
        return cut_off_result(message, "node")

    def _end(
        self,
        run: ChildRun,
        returncode: Optional[int],
        cpu_s: Optional[float],
        peak_rss_bytes: Optional[int],
        result: Optional[Dict[str, Any]],
        abandoned: bool = False,
    ) -> None:
        with self._lock:
            task: Optional[RayTask] = run.handle
            if run.done.is_set() or task is None:
                return
            run.handle = None
        if result is None and returncode is None and run.stop_signal is not None:
            returncode = -run.stop_signal  # stopped before it ever ran
        # One never placed on a node (cancelled while it waited in the cluster's queue) ran for no time.
        wall_s = 0.0 if run.placement is None else None
        self._finish(run, returncode, cpu_s, peak_rss_bytes, result=result, wall_s=wall_s)
        if abandoned:
            return  # the word stays on the board for the task, should its node wake
        try:
            self._board.forget.remote(task.key)
        except Exception:  # noqa: BLE001 - the cluster is going; the board goes with it
            pass

    def _watch_nodes(self) -> None:
        """Give up on runs whose task has said nothing for NODE_SILENT_S: their node is lost;
        and on runs waiting NODE_GONE_GRACE_S for GPUs that no live node has (Ray would wait
        forever)."""
        while not self._closed.wait(1.0):
            try:
                self._read_node_gpus()
                self._watch_once()
            except Exception:  # noqa: BLE001 - a hiccup of the cluster's state: look again in a second
                if self._closed.is_set():
                    return

    def _watch_once(self) -> None:
        now = time.monotonic()
        for run in self.running:
            with self._lock:
                task: Optional[RayTask] = run.handle
            if task is None:
                continue
            if run.placement is None:
                if run.gpus and run.gpus > max(self.node_gpus(), default=0.0):
                    if task.gpus_missing_since is None:
                        task.gpus_missing_since = now
                    if now - task.gpus_missing_since >= NODE_GONE_GRACE_S:
                        # Cut off, not failed: the daemon tries it again, and records why if it still cannot run.
                        message = f"it waited for {run.gpus:g} GPUs, and no live node of the Ray cluster has them any more"
                        self._end(run, None, None, None, cut_off_result(message, "node"))
                        _cancel(task.stream, force=False)
                else:
                    task.gpus_missing_since = None
                continue
            if task.heard is None or now - task.heard < NODE_SILENT_S:
                continue
            # Ended first, so that nothing the task says from now on is taken; the word stays on
            # the board for the task, should its node wake.
            self._end(run, None, None, None, self._broken(run, f"silent for {now - task.heard:.0f} s"), abandoned=True)
            self._board.post.remote(task.key, ABANDON)
            _cancel(task.stream, force=True)


def _cancel(stream: Any, force: bool) -> None:
    try:
        ray.cancel(stream, force=force)
    except Exception:  # noqa: BLE001 - a task that cannot be reached cannot be told; it ends itself
        pass


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, without the colours Ray puts in its own."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
