"""executor = "slurm": a real daemon drives a real Slurm cluster on this machine.

The cluster (tests/slurm_cluster.py) is Debian's slurmctld and slurmd with munge, started by
the module's fixture and stopped at its end: one node, two fake GPUs (a gres backed by device
nodes made with mknod), a partition ``urgent`` whose jobs preempt the default one's by
requeueing them. Real jobs, real scancel, real requeues, preemption and time limits.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import processes_of_runs, versions_code
from slurm_cluster import SlurmCluster

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def slurm(slurm_cluster) -> Iterator[SlurmCluster]:
    """The cluster, with no job of an earlier test left."""
    slurm_cluster.clear()
    yield slurm_cluster


@pytest.fixture
def slurm_project(project, slurm):
    yield project


def _slurm_config(project: Any, *lines: str, slurm: str = "") -> None:
    text = "\n".join(['[MLP]', 'models_dir = "models"', 'executor = "slurm"', *lines]) + "\n"
    project.write("mlp.config", text + (f"\n[SLURM]\n{slurm}\n" if slurm else ""))


def _started(project: Any, version: str) -> List[Dict[str, Any]]:
    return [row for row in project.journal() if row["event"] == "started" and row["version"] == version]


def _events(project: Any, version: str) -> List[str]:
    return [row["event"] for row in project.journal() if row["version"] == version and row["event"] != "claimed"]


def _job_of(project: Any, version: str) -> str:
    return _started(project, version)[-1]["slurm_job"]


def test_versions_run_as_slurm_jobs_with_the_gpus_they_ask_for(slurm_project, slurm):
    project = slurm_project
    project.script(
        "net.py",
        versions_code(
            'versions.addV("cpu", gpus=0, model_dir_suffix="cpu", print_lines=2)',
            'versions.addV("one", gpus=1, model_dir_suffix="one")',
            'versions.addV("two", gpus=2, model_dir_suffix="two")',
            'versions.addV("three", gpus=3, model_dir_suffix="three")',
        ),
    )
    project.queue(["net.py"])
    _slurm_config(project, "workers = 3")
    done = project.run("-r", timeout=240)
    assert done.returncode == 1, done.output  # "three" failed
    results = {row["version"]: row for row in project.results()}
    assert {version: row["status"] for version, row in results.items()} == {
        "cpu": "finished", "one": "finished", "two": "finished", "three": "failed",
    }  # fmt: skip
    assert "three asks for 3 GPUs; the largest node of the Slurm cluster has 2" in results["three"]["reason"]
    train = {call["version"]: call for call in project.calls("train")}
    assert train["cpu"]["cuda"] == ""  # no GPU asked for: none visible, as locally
    assert train["one"]["cuda"] in ("0", "1") and sorted(train["two"]["cuda"].split(",")) == ["0", "1"]
    jobs = {job["id"]: job for job in slurm.jobs()}
    for version in ("cpu", "one", "two"):
        started = _started(project, version)
        assert len(started) == 1 and started[0]["slurm_job"] in jobs and started[0]["slurm_node"] == "mlpnode"
        assert jobs[started[0]["slurm_job"]]["name"] == f"mlp:net.py:{version}"
        assert jobs[started[0]["slurm_job"]]["state"] == "COMPLETED"
        assert results[version]["slurm_job"] == started[0]["slurm_job"]
        record = json.loads((Path(results[version]["model_dir"]) / ".mlpipeline" / "run.json").read_text())
        assert record["slurm_job"] == started[0]["slurm_job"] and record["state"] == "finished"
    assert started[0]["gpus"] == train["two"]["cuda"].split(",")
    log = project.log_text()
    assert "hello from cpu" in log and f"running as Slurm job {_job_of(project, 'cpu')} on node mlpnode" in log
    assert not list((project.outputs / "slurm-jobs").iterdir())  # each job's folder goes once its end is recorded


def test_lines_and_reports_arrive_while_the_job_runs(slurm_project):
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("talks", gpus=0, print_lines=1, sleep_per_step=0.5)'))
    project.queue(["net.py"])
    _slurm_config(project)
    daemon = project.start("-r")
    try:
        project.wait_for(lambda: "hello from talks" in project.log_text(), timeout=90, what="the version's line in the log")
        rows: List[Dict[str, Any]] = []

        def running_with_progress() -> bool:
            rows[:] = json.loads(project.run("status", "--json").stdout)
            return bool(rows and rows[0]["state"] == "running" and (rows[0]["progress"] or {}).get("step"))

        project.wait_for(running_with_progress, timeout=30, what="status to show its progress")
        assert rows[0]["progress"]["step"] < 20
        output, _ = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert "finished in" in output and "loss=0.05" in project.log_text()


@pytest.mark.parametrize("how", ["requeue", "preempt"])
def test_a_job_requeued_or_preempted_is_cut_off_and_resumed_once(slurm_project, slurm, how):
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("long", gpus=0, sleep_per_step=0.2)', defaults="learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=6"))
    project.queue(["net.py"])
    _slurm_config(project)
    daemon = project.start("-r", "-u")
    try:
        project.wait_for(lambda: len(project.calls("train")) == 1 and _started(project, "long"), timeout=90, what="the version to train")
        time.sleep(1.5)  # a few steps checkpointed
        job = _job_of(project, "long")
        if how == "requeue":
            slurm.command("scontrol", "requeue", job)
        else:
            slurm.command("sbatch", "--partition=urgent", f"--cpus-per-task={16}", "--wrap", "sleep 2", "--output=/dev/null")
        output, _ = daemon.communicate(timeout=240)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert _events(project, "long") == ["started", "interrupted", "started", "finished"], project.journal()
    interrupted = next(row for row in project.journal() if row["event"] == "interrupted")
    assert f"Slurm job {job}" in interrupted["reason"] and "requeued" in interrupted["reason"]
    first, second = project.calls("train")
    assert second["start"] > 0 and second["start"] + second["steps"] == first["start"] + first["steps"]  # from its checkpoint
    assert _job_of(project, "long") != job
    time.sleep(3)
    states = {row["id"]: row["state"] for row in slurm.jobs()}
    assert states[job] == "CANCELLED"  # Slurm's own rerun of the requeued job never comes


def _no_version_process_left(project: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while processes_of_runs(project.outputs) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [(process.pid, process.cmdline()) for process in processes_of_runs(project.outputs)]
    assert not left, f"processes of versions still run: {left}"


@pytest.mark.parametrize("how", ["cancel", "timeout", "sigterm"])
def test_a_cancel_a_timeout_or_a_stopped_daemon_ends_the_job(slurm_project, slurm, how):
    project = slurm_project
    never = project.root / "never"
    project.script("net.py", versions_code(f'versions.addV("stays", gpus=0, grandchildren=[False, True], wait_for={str(never)!r})'))
    project.queue(["net.py"])
    _slurm_config(project, "version_timeout = 4" if how == "timeout" else "")
    daemon = project.start("-r", "-u")
    try:
        project.wait_for(lambda: len(project.calls("grandchild")) == 2 and _started(project, "stays"), timeout=90, what="the version and its processes to run")
        job = _job_of(project, "stays")
        if how == "cancel":
            assert project.run("cancel", "net.py:stays").returncode == 0
        elif how == "sigterm":
            daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    expected = {"cancel": ("cancelled", 0), "timeout": ("timed_out", 1), "sigterm": ("interrupted", 143)}[how]
    assert (_events(project, "stays")[-1], daemon.returncode) == expected, output
    _no_version_process_left(project)
    slurm_state = {row["id"]: row["state"] for row in slurm.jobs()}[job]
    assert slurm_state in ("CANCELLED", "COMPLETED"), slurm_state  # ended, not left to run
    if how == "sigterm":  # interrupted, so resumed by the next -u
        never.touch()
        again = project.run("-r", "-u", timeout=120)
        assert again.returncode == 0 and _events(project, "stays")[-2:] == ["started", "finished"], again.output


def test_a_daemon_killed_with_9_leaves_its_jobs_and_the_next_adopts_them(slurm_project, slurm):
    project = slurm_project
    gate_a, gate_b = project.root / "a may end", project.root / "b may end"
    project.script(
        "net.py",
        versions_code(
            f'versions.addV("runs_on", gpus=0, model_dir_suffix="a", print_lines=1, wait_for={str(gate_a)!r})',
            f'versions.addV("ends_meanwhile", gpus=0, model_dir_suffix="b", wait_for={str(gate_b)!r})',
        ),
    )
    project.queue(["net.py"])
    _slurm_config(project, "workers = 2")
    before = max((int(row["id"]) for row in slurm.jobs()), default=0)
    first = project.start("-r", "-u")
    try:
        project.wait_for(
            lambda: len(project.calls("train")) == 2 and all(_started(project, v) for v in ("runs_on", "ends_meanwhile")),
            timeout=90,
            what="both versions to train",
        )
        jobs = {version: _job_of(project, version) for version in ("runs_on", "ends_meanwhile")}
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    time.sleep(2)
    states = {row["id"]: row["state"] for row in slurm.jobs()}
    assert [states[job] for job in jobs.values()] == ["RUNNING", "RUNNING"]  # a dead daemon's jobs go on
    gate_b.touch()
    project.wait_for(lambda: {row["id"]: row["state"] for row in slurm.jobs()}[jobs["ends_meanwhile"]] == "COMPLETED", timeout=60, what="b's job to end")
    second = project.start("-r", "-u")
    try:
        project.wait_for(lambda: len(_started(project, "runs_on")) == 2, timeout=60, what="the running job to be followed")
        gate_a.touch()
        output, _ = second.communicate(timeout=120)
    finally:
        second.kill()
    assert second.returncode == 0, output
    assert len(project.calls("train")) == 2  # neither trained again
    assert {row["id"] for row in slurm.jobs() if int(row["id"]) > before} == set(jobs.values())  # nothing submitted again
    for version in jobs:
        assert _events(project, version) == ["started", "interrupted", "started", "finished"], project.journal()
        assert _started(project, version)[-1]["slurm_job"] == jobs[version]
    assert "followed from its earlier run" in project.log_text()
    results = {row["version"]: row for row in project.results()}
    assert results["runs_on"]["status"] == results["ends_meanwhile"]["status"] == "finished"
    assert project.log_text().count("hello from runs_on") == 1  # its line was delivered once, by one daemon
