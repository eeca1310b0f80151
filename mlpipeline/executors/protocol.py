"""What the daemon and a child exchange: the request, the result, the end causes, and the
stream a Ray task sends back.

A local child gets a run folder (:func:`new_run_folder`): the daemon writes ``request.json``,
the child writes ``result.json`` (atomically) before it exits. A Ray task gets the request as
its argument and streams its result back. Only plain JSON crosses: live objects stay in the
child.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, TypedDict

from mlpipeline.records.files import json_text, write_json_atomic

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
ENDED_EPOCH = "ended_epoch"
"""The result's field for when the child ended (seconds since the epoch, its host's clock),
which the local executor takes its duration from: the daemon may have been stopped meanwhile."""

LIST_VERSIONS = "list"
RUN_VERSION = "run"

STEPS_EVENT = "steps"
"""The worker's event before training: ``{"type": "steps", "steps": {"trained": planned,
"total", "already_trained"}, "continued": whether a fresh run continues from a checkpoint
its model did not clean}``."""

TRAINED_EVENT = "trained"
"""The worker's event once train_model has returned (not raised): a stop the daemon sent before
it came, which the script took as "stop here" and returned early, cut the training short."""

LIFELINE_FD_VARIABLE = "MLPIPELINE_LIFELINE_FD"
"""The read end of a keeper's lifeline, a pipe whose only write end its daemon holds: it reads
end-of-file when the daemon dies, or closes it to have the keeper kill the tree it keeps."""

RUN_ID_VARIABLE = "MLPIPELINE_RUN_ID"
"""Set in every process of a version (inherited): it names the run, for the user's own tracking
code, and lets the daemon find a process of the run that escaped its tree."""


def version_environment(run_id: str, script: str, version: str, model_dir: str) -> Dict[str, str]:
    """The variables a version's child gets: which run of which version it is, and where;
    and CUDA_DEVICE_ORDER=PCI_BUS_ID unless set, so that GPU ids mean what nvidia-smi shows
    (CUDA's own default order, fastest first, numbers them differently)."""
    return {
        "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
        # The daemon's (framework_noise.py), carried to versions on Ray nodes too.
        **({"TF_CPP_MIN_LOG_LEVEL": os.environ["TF_CPP_MIN_LOG_LEVEL"]} if "TF_CPP_MIN_LOG_LEVEL" in os.environ else {}),
        RUN_ID_VARIABLE: run_id,
        "MLPIPELINE_SCRIPT": script,
        "MLPIPELINE_VERSION": version,
        "MLPIPELINE_MODEL_DIR": model_dir,
    }


class ChildRequest:
    """One job for a child process: list a script's versions, or run one version.

    A plain class, not a dataclass: every child reads one as it starts, and importing
    dataclasses (with inspect) would cost each child about 10 ms of CPU."""

    def __init__(
        self,
        action: str,
        script_path: str,
        script_label: str,
        version: Optional[str] = None,
        model_dir: Optional[str] = None,
        execution_mode: bool = False,
        fresh: bool = True,
        run_record: Optional[Dict[str, Any]] = None,
        models_dir: Optional[str] = None,
        heartbeat: Optional[Dict[str, Any]] = None,
        sha256: Optional[str] = None,
        check_sha256: bool = False,
        until_step: Optional[int] = None,
    ) -> None:
        self.action = action
        self.script_path = script_path
        self.script_label = script_label
        self.version = version
        self.model_dir = model_dir
        self.execution_mode = execution_mode
        self.fresh = fresh
        self.run_record = run_record  # run.json's start, written into <model_dir>/.mlpipeline/
        self.models_dir = models_dir  # the script must really be inside it (a link may point elsewhere)
        # The daemon's heartbeat, which the keeper watches: file, folder, interval, daemon, namespace.
        self.heartbeat = heartbeat
        self.sha256 = sha256  # the script's fingerprint when the daemon chose the version
        # Refuse a script whose bytes are not ``sha256``: set where the child may see another file
        # system than the daemon's (a Ray node's view of the shared folder).
        self.check_sha256 = check_sha256
        # Early stopping: train up to this step (a rung) and pause there, the model saved.
        self.until_step = until_step

    def to_json(self) -> Dict[str, Any]:
        return dict(vars(self))

    def changed(self, **changes: Any) -> "ChildRequest":
        """A copy with ``changes`` made (as dataclasses.replace makes one)."""
        return ChildRequest(**{**vars(self), **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is ChildRequest and vars(other) == vars(self)

    def __repr__(self) -> str:
        return f"ChildRequest({', '.join(f'{key}={value!r}' for key, value in vars(self).items())})"

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / REQUEST_FILE, self.to_json(), durable=False, for_people=False)  # a temporary folder

    @classmethod
    def read(cls, run_dir: Path) -> "ChildRequest":
        return cls(**json.loads((run_dir / REQUEST_FILE).read_text(encoding="utf-8")))


RUN_FOLDER_PREFIX = "mlpipeline-run-"
"""A run folder's name: the prefix, the pid of the process that made it, "-", and mkdtemp's
letters; the pid lets a later daemon remove the folders of one that was killed outright."""


def new_run_folder(request: ChildRequest) -> Path:
    """A temporary folder holding ``request`` for a child on this host to read."""
    import shutil  # here, not above: every child imports this module as it starts
    import tempfile

    run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_FOLDER_PREFIX}{os.getpid()}-"))
    try:
        request.write(run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def take_result(run_dir: Path) -> Optional["ChildResult"]:
    """The result.json the child left in ``run_dir``, if a whole one; the folder is removed."""
    import shutil

    from mlpipeline.records.lines import load_object

    try:
        result: Optional[ChildResult] = load_object(run_dir / RESULT_FILE)  # type: ignore[assignment]
    except (OSError, ValueError):
        result = None
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def describe_node(placement: Dict[str, Any]) -> str:
    """A Ray node as records name it: ``10.0.0.6 (host gpu-b, node 3f2a9c1d)``."""
    node_id = str(placement.get("node_id") or "")
    return f"{placement.get('node_ip')} (host {placement.get('node_host')}, node {node_id[:8]})"


class ScriptError:
    """Why a script or version failed, as the child saw it."""

    def __init__(self, message: str, traceback: str = "", phase: str = "", no_space: Optional[str] = None) -> None:
        self.message = message
        self.traceback = traceback
        self.phase = phase
        self.no_space = no_space
        """When a full disk (or quota) made it fail: the file it refused ("" when not known).
        The machine's doing, not the script's: its version is resumed, not failed."""

    def to_json(self) -> "ErrorFields":
        fields: ErrorFields = {"message": self.message, "traceback": self.traceback, "phase": self.phase}
        if self.no_space is not None:
            fields["no_space"] = self.no_space
        return fields

    def __eq__(self, other: object) -> bool:
        return type(other) is ScriptError and vars(other) == vars(self)

    def __repr__(self) -> str:
        return f"ScriptError(message={self.message!r}, traceback={self.traceback!r}, phase={self.phase!r}, no_space={self.no_space!r})"

    @classmethod
    def from_json(cls, data: Optional[Dict[str, Any]]) -> Optional["ScriptError"]:
        return None if data is None else cls(**data)


class ErrorFields(TypedDict, total=False):
    """A result's ``error``: ScriptError's fields as JSON."""

    message: str
    traceback: str
    phase: str
    no_space: str


class ChildResult(TypedDict, total=False):
    """What ``result.json`` holds, written by the worker, or in its place by whoever saw the
    child end without one (its keeper, a Ray task, the Ray executor).

    ``ok``: the version (or the listing) ended well. ``cut_off``: it was ended from outside
    before its end (a silent daemon, a lost node): to be resumed, not recorded failed. The
    rest is the worker's: a listing's ``sha256``, ``names``, ``missing``, ``suffixes``,
    ``gpus`` (and ``inputs`` and ``globs`` for versions made from configuration files); a
    run's ``sha256`` (the version's fingerprint), ``parameters``, ``epochs``, ``steps``,
    ``eval_train``, ``eval_test``, ``model_summary``, ``dataloader_summary``.
    """

    ok: bool
    cut_off: bool
    error: ErrorFields


def cut_off_result(message: str, phase: str) -> ChildResult:
    """The result of a run ended from outside before it could end itself: resumed later."""
    return {"ok": False, "cut_off": True, "error": {"message": message, "phase": phase}}


def cancelled_result(message: str, phase: str) -> ChildResult:
    """The result of a run someone ended outside mlpipeline (a job's ``scancel`` by hand):
    recorded cancelled, as `mlpipeline cancel` would, not resumed."""
    return {"ok": False, "cancelled": True, "error": {"message": message, "phase": phase}}


def failed_result(message: str, phase: str) -> ChildResult:
    """The result of a run that could not be run or whose end was never told: failed."""
    return {"ok": False, "error": {"message": message, "phase": phase}}


def missing_message(label: str, missing: List[str]) -> str:
    """Why a version lacking required parameters cannot run: said by the daemon before it
    starts one (launcher, test mode) and by the child that finds it."""
    names = ", ".join(name.upper() for name in missing)
    return f"{label} has no {names}: set it in addV() or as a Versions default"


# -- what a Ray task streams to its daemon (ray_task.py to ray_executor.py) ---------------

PLACED = "placed"
"""``(PLACED, where)``: the child runs; ``where`` names the node, the child's pid, its GPUs."""
OUT = "out"
"""``(OUT, [item, ...])``: what the child said, in order; an item is ``(LINES, stream,
[text, ...])`` or ``(EVENT, event)``. Sent empty as a beat when the child is quiet."""
ENDED = "ended"
"""``(ENDED, TaskEnd)``: the child ended; the last message."""
LINES = "lines"
EVENT = "event"


class TaskEnd(TypedDict, total=False):
    """How a version's child ended on its node: its result (None when it left none), its
    exit code, and what it used."""

    result: Optional[ChildResult]
    returncode: Optional[int]
    cpu_s: Optional[float]
    peak_rss_bytes: Optional[int]
    wall_s: Optional[float]  # from the version's start on its node to its end
    signals: List[str]  # a Slurm job's: the signals it was sent (TERM: Slurm ended it, or the daemon)


# -- what the daemon and its preload server say (executors/preload_client.py, child/preload_server.py)

PRELOAD_FOLDER_PREFIX = "mlpipeline-preload-"
"""The temporary folder of a preload server's socket and its script servers' sockets."""

KILL_WORKER = b"kill\n"
"""What the daemon sends on a worker's connection to have its keeper kill the worker's tree."""


def send_message(connection: Any, message: Dict[str, Any]) -> None:
    """One JSON line on ``connection``."""
    connection.sendall((json_text(message) + "\n").encode("utf-8"))


def receive_message(reader: Any) -> Optional[Dict[str, Any]]:
    """The next JSON line from ``reader`` (a connection's file), None at its end."""
    line = reader.readline()
    return json.loads(line) if line else None
