"""The executor contract (mlpipeline/executors/base.py), held against every executor.

Each test drives a real executor in this process, as the execution loop does, with real
children running a real model script. A new executor joins by adding itself to EXECUTORS.
The in-process executor runs versions in this very process: it is held to every part of the
contract but those about a child's own process (an exit, a stop, a tree to end).
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from conftest import alive, versions_code
from mlpipeline.executors.base import ChildRun, Executor
from mlpipeline.executors.in_process import InProcessExecutor
from mlpipeline.executors.local import KEEPER_ANSWER_S, LocalExecutor
from mlpipeline.executors.preloaded import PreloadExecutor, local_executor
from mlpipeline.executors.protocol import LIST_VERSIONS, RUN_VERSION, ChildRequest


def _local(work_dir: Path) -> Executor:
    return LocalExecutor(work_dir)


def _preloaded(work_dir: Path) -> Executor:
    warnings: List[str] = []
    executor = local_executor(work_dir, ["json"], warnings.append)
    assert isinstance(executor, PreloadExecutor), warnings
    return executor


def _ray(work_dir: Path, cluster: Any) -> Executor:
    from mlpipeline.executors.ray_executor import RayExecutor

    outputs = work_dir / "models" / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    return RayExecutor(work_dir, outputs, cluster.address)


def _slurm(work_dir: Path, cluster: Any) -> Executor:
    from mlpipeline.executors.slurm_executor import SlurmExecutor

    outputs = work_dir / "models" / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    cluster.clear()
    return SlurmExecutor(work_dir, outputs, None, None, (), "contract-test")


def _in_process(work_dir: Path) -> Executor:
    return InProcessExecutor(work_dir)


EXECUTORS = {"local": _local, "preloaded": _preloaded, "ray": _ray, "slurm": _slurm, "in_process": _in_process}
NEEDS_CLUSTER = {"ray": "ray_cluster", "slurm": "slurm_cluster"}
"""The executors that need a cluster, and the fixture that starts it."""
SHARES_THIS_PROCESS = {"in_process"}


def _made(name: str, request: Any, project: Any) -> Iterator[Executor]:
    if name in NEEDS_CLUSTER:
        made = EXECUTORS[name](project.root, request.getfixturevalue(NEEDS_CLUSTER[name]))
    else:
        made = EXECUTORS[name](project.root)
    assert made.isolated == (name not in SHARES_THIS_PROCESS)
    yield made
    made.stop_all(signal.SIGKILL)
    made.close()


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request: Any, project: Any) -> Iterator[Executor]:
    yield from _made(request.param, request, project)


@pytest.fixture(params=sorted(set(EXECUTORS) - SHARES_THIS_PROCESS))
def isolated_executor(request: Any, project: Any) -> Iterator[Executor]:
    yield from _made(request.param, request, project)


def _script(project: Any) -> Path:
    return project.script(
        "net.py",
        versions_code(
            'versions.addV("talks", print_lines=2)',
            'versions.addV("exits", exit_in="train", exit_code=3)',
            'versions.addV("fails", fail_in="train")',
            f'versions.addV("stays", grandchildren=[False, True], wait_for={str(project.root / "never")!r})',
        ),
    )


def _request(project: Any, script: Path, version: str = "", action: str = RUN_VERSION) -> ChildRequest:
    model_dir = project.outputs / "model_ckpts" / version if version else None
    if model_dir is not None:
        model_dir.mkdir(parents=True, exist_ok=True)
    return ChildRequest(
        action=action,
        script_path=str(script),
        script_label=script.name,
        version=version or None,
        model_dir=str(model_dir) if model_dir else None,
        execution_mode=True,
        models_dir=str(project.models),
    )


def _submit(executor: Executor, request: ChildRequest, **options: Any) -> Tuple[ChildRun, List[Tuple[str, str]], List[Dict[str, Any]]]:
    lines: List[Tuple[str, str]] = []
    events: List[Dict[str, Any]] = []
    run = executor.submit(request, on_lines=lambda stream, texts: lines.extend((stream, text) for text in texts), on_event=events.append, tag="mine", **options)
    return run, lines, events


def _next(executor: Executor, timeout: float = 60) -> ChildRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = executor.next_finished(timeout=0.2)
        if finished is not None:
            return finished
    raise AssertionError("no child ended in time")


def _calls(project: Any, hook: str) -> List[Dict[str, Any]]:
    path = project.root / "calls.jsonl"
    if not path.exists():
        return []
    return [call for call in map(json.loads, path.read_text().splitlines()) if call.get("hook") == hook]


def test_a_version_runs_and_its_lines_events_environment_and_result_come_back(executor, project):
    script = _script(project)
    run, lines, events = _submit(executor, _request(project, script, "talks"), env={"MLPIPELINE_TEST_MARKER": "7"})
    assert executor.outstanding == 1
    finished = _next(executor)
    assert finished is run and finished.tag == "mine"
    assert executor.newly_placed() == [run] and run.placement  # where it ran, known before its end
    outcome = finished.outcome
    assert outcome is not None and outcome.returncode == 0 and outcome.result and outcome.result["ok"], outcome
    assert outcome.wall_s > 0 and outcome.stop_signal is None and not outcome.timed_out
    assert lines.count(("stdout", "hello from talks")) == 2
    reports = [event for event in events if event.get("type") == "report"]
    assert reports and reports[-1]["metrics"]["loss"] > 0
    assert [call["marker"] for call in _calls(project, "train")] == ["7"]
    assert executor.outstanding == 0 and not executor.running


def test_call_runs_one_child_to_its_end(executor, project):
    script = _script(project)
    outcome = executor.call(_request(project, script, action=LIST_VERSIONS), on_lines=lambda *_: None, on_event=lambda _: None)
    assert outcome.returncode == 0 and outcome.result is not None
    assert outcome.result["names"] == ["talks", "exits", "fails", "stays"]
    assert executor.outstanding == 0  # a call is not queued for next_finished


def test_a_version_that_raises_says_why(executor, project):
    script = _script(project)
    _submit(executor, _request(project, script, "fails"))
    outcome = _next(executor).outcome
    assert outcome is not None and outcome.returncode != 0 and outcome.result is not None
    assert outcome.result["ok"] is False
    error = outcome.result["error"]
    assert error["phase"] == "train_model" and "net.py:fails failed in train_model" in error["message"], error
    assert "RuntimeError: deliberate failure in train" in error["traceback"]


def test_a_child_that_exits_says_how(isolated_executor, project):
    executor = isolated_executor
    script = _script(project)
    _submit(executor, _request(project, script, "exits"))
    outcome = _next(executor).outcome
    assert outcome is not None and outcome.result is None
    assert outcome.returncode == 3 and outcome.exit_description == "exited with status 3"


def test_an_end_counts_as_outstanding_until_it_is_taken(executor, project):
    script = _script(project)
    run, _, _ = _submit(executor, _request(project, script, "fails"))
    assert run.done.wait(60)
    assert executor.outstanding == 1  # ended, but its end not yet taken: a loop must not stop here
    assert _next(executor) is run and executor.outstanding == 0


@pytest.mark.parametrize("how", ["stop", "timeout"])
def test_a_stop_or_a_timeout_ends_the_whole_tree(isolated_executor, project, how):
    executor = isolated_executor
    script = _script(project)
    run, _, _ = _submit(executor, _request(project, script, "stays"), timeout=None if how == "stop" else 3)
    deadline = time.monotonic() + 60
    while len(_calls(project, "grandchild")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchildren = [call["pid"] for call in _calls(project, "grandchild")]
    assert len(grandchildren) == 2  # one in the version's session, one in a session of its own
    if how == "stop":
        executor.stop(run, signal.SIGTERM)
    outcome = _next(executor).outcome
    assert outcome is not None
    if how == "stop":
        assert outcome.stop_signal == signal.SIGTERM and not outcome.timed_out
    else:
        assert outcome.timed_out and outcome.stop_signal == signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in grandchildren if alive(pid)]


def _grandchildren(project: Any, count: int) -> List[int]:
    deadline = time.monotonic() + 60
    while len(_calls(project, "grandchild")) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [call["pid"] for call in _calls(project, "grandchild")]
    assert len(pids) == count
    return pids


@pytest.mark.parametrize("name", ["local", "preloaded"])
def test_a_kill_is_the_keepers_and_the_daemon_kills_only_when_the_keeper_cannot(name, project):
    """One killer per tree: the version's keeper. While the keeper is frozen the daemon's kill
    leaves the tree as it is, until KEEPER_ANSWER_S have passed without an answer; then the
    daemon kills the tree itself. Thawed, the keeper finds its work done."""
    executor = EXECUTORS[name](project.root)
    try:
        script = _script(project)
        run, _, _ = _submit(executor, _request(project, script, "stays"))
        grandchildren = _grandchildren(project, 2)
        keeper = run.pid if name == "local" else executor.preload.process.pid  # type: ignore[attr-defined]
        os.kill(keeper, signal.SIGSTOP)
        try:
            asked = time.monotonic()
            executor.stop(run, signal.SIGKILL)
            time.sleep(0.5)
            if time.monotonic() - asked < KEEPER_ANSWER_S:  # on a machine this slow, the check says nothing
                assert all(alive(pid) for pid in grandchildren), "the daemon killed what its keeper was asked to"
            outcome = _next(executor, timeout=KEEPER_ANSWER_S + 60).outcome
        finally:
            try:
                os.kill(keeper, signal.SIGCONT)
            except ProcessLookupError:
                pass  # a keeper of its own, killed with the tree it kept
        assert outcome is not None and outcome.stop_signal == signal.SIGKILL
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in grandchildren) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in grandchildren if alive(pid)]
    finally:
        executor.stop_all(signal.SIGKILL)
        executor.close()


def test_an_answering_keeper_kills_its_tree_and_ends_as_killed(isolated_executor, project):
    executor = isolated_executor
    script = _script(project)
    run, _, _ = _submit(executor, _request(project, script, "stays"))
    grandchildren = _grandchildren(project, 2)
    executor.stop(run, signal.SIGKILL)
    outcome = _next(executor, timeout=KEEPER_ANSWER_S).outcome  # the keeper's kill, not the daemon's after its wait
    assert outcome is not None and outcome.stop_signal == signal.SIGKILL
    assert outcome.returncode == -signal.SIGKILL and outcome.exit_description == "was killed by SIGKILL"
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in grandchildren if alive(pid)]
