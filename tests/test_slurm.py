"""executor = "slurm": a real daemon drives a real Slurm cluster on this machine.

The cluster (tests/slurm_cluster.py) is Debian's slurmctld and slurmd with munge, started by
the module's fixture and stopped at its end: one node, two fake GPUs (a gres backed by device
nodes made with mknod), a partition ``urgent`` whose jobs preempt the default one's by
requeueing them. Real jobs, real scancel, real requeues, preemption and time limits.
"""
from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import processes_of_runs, versions_code
from test_frameworks import TORCH_SCRIPT
from slurm_cluster import CPUS, SlurmCluster
from slurm_cluster import _wait_for as wait_for

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


def _take_the_node(slurm: SlurmCluster) -> str:
    """A job that holds every CPU of the one node for 2 minutes, as others' jobs do: its id."""
    blocker = slurm.command("sbatch", "--parsable", f"--cpus-per-task={CPUS}", "--output=/dev/null", "--wrap", "sleep 120").stdout.strip()
    wait_for(lambda: {row["id"]: row["state"] for row in slurm.jobs()}.get(blocker) == "RUNNING", 60, "the node to be taken")
    return blocker


def _waiting_behind_a_taken_node(project: Any, slurm: SlurmCluster, version: str, *args: str) -> "tuple[str, subprocess.Popen]":
    """net.py's one version ``queued`` (its addV arguments ``version``) started with ``args`` while
    a job holds the node: the blocker's job id and the daemon, once the version waits in Slurm's queue."""
    blocker = _take_the_node(slurm)
    project.script("net.py", versions_code(f'versions.addV("queued", {version})'))
    project.queue(["net.py"])
    _slurm_config(project)
    daemon = project.start(*args)
    try:
        project.wait_for(lambda: _status(project)["queued"]["state"] == "waiting", timeout=60, what="the version to wait in Slurm's queue")
    except BaseException:
        daemon.kill()
        raise
    return blocker, daemon


def _queue_long(project: Any, epochs: int, *more: str) -> None:
    """net.py queued for Slurm: version ``long`` (no GPU, 10 steps an epoch of 0.2 s each) and
    ``more`` after it."""
    defaults = f"learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count={epochs}"
    project.script("net.py", versions_code('versions.addV("long", gpus=0, sleep_per_step=0.2)', *more, defaults=defaults))
    project.queue(["net.py"])
    _slurm_config(project)


def _wait_until_training(project: Any, version: str = "long") -> None:
    """Until ``version``'s job has started and its training began (the only training so far)."""
    project.wait_for(lambda: len(project.calls("train")) == 1 and _started(project, version), timeout=90, what=f"{version} to train")


def _job_folder(project: Any) -> Path:
    """The one job folder under outputs/slurm-jobs."""
    [folder] = [path for path in (project.outputs / "slurm-jobs").iterdir() if path.is_dir()]
    return folder


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
    _queue_long(project, epochs=6)
    daemon = project.start("-r", "-u")
    try:
        _wait_until_training(project)
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
    # Ended, not left to run: COMPLETING is Slurm's word for a job that ended whose node is
    # still cleaning up after it (a moment), so the test waits for what comes after.
    states = []
    project.wait_for(
        lambda: states.append({row["id"]: row["state"] for row in slurm.jobs()}[job]) or states[-1] != "COMPLETING",
        timeout=30, what="Slurm to finish ending the job",
    )  # fmt: skip
    assert states[-1] in ("CANCELLED", "COMPLETED"), states
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
        training_since = time.monotonic()
        jobs = {version: _job_of(project, version) for version in ("runs_on", "ends_meanwhile")}
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    time.sleep(2)
    states = {row["id"]: row["state"] for row in slurm.jobs()}
    assert [states[job] for job in jobs.values()] == ["RUNNING", "RUNNING"]  # a dead daemon's jobs go on
    shown = _status(project)["runs_on"]  # and status says so: the version may still train
    assert shown["state"] == "interrupted" and f"its Slurm job {jobs['runs_on']} may still run" in shown["reason"], shown
    gate_b.touch()
    trained = {"ends_meanwhile": time.monotonic() - training_since}
    project.wait_for(lambda: {row["id"]: row["state"] for row in slurm.jobs()}[jobs["ends_meanwhile"]] == "COMPLETED", timeout=60, what="b's job to end")
    second = project.start("-r", "-u")
    try:
        project.wait_for(lambda: len(_started(project, "runs_on")) == 2, timeout=60, what="the running job to be followed")
        time.sleep(1)
        gate_a.touch()
        trained["runs_on"] = time.monotonic() - training_since
        output, _ = second.communicate(timeout=120)
    finally:
        second.kill()
    assert second.returncode == 0, output
    assert len(project.calls("train")) == 2  # neither trained again
    submitted = {row["id"] for row in slurm.jobs() if int(row["id"]) > before and row["name"] != "mlp:folder-check"}
    assert submitted == set(jobs.values())  # nothing submitted again (but the start's probe jobs)
    for version in jobs:
        assert _events(project, version) == ["started", "interrupted", "started", "finished"], project.journal()
        assert _started(project, version)[-1]["slurm_job"] == jobs[version]
    assert "followed from its earlier run" in project.log_text()
    results = {row["version"]: row for row in project.results()}
    assert results["runs_on"]["status"] == results["ends_meanwhile"]["status"] == "finished"
    for version, at_least in trained.items():
        # As long as the job ran on its node, not since the second daemon took it over.
        assert results[version]["duration_s"] >= at_least, (version, results[version]["duration_s"], at_least)
    assert project.log_text().count("hello from runs_on") == 1  # its line was delivered once, by one daemon


def test_status_shows_a_version_waiting_in_slurms_queue_apart_from_running_ones(slurm_project, slurm):
    project = slurm_project
    blocker, daemon = _waiting_behind_a_taken_node(project, slurm, "gpus=0, sleep_per_step=0.1", "-r")
    try:
        text = project.run("status").stdout
        assert "waiting" in text and "waiting in the cluster's queue" in text, text
        slurm.command("scancel", blocker)
        project.wait_for(lambda: _status(project)["queued"]["state"] in ("running", "finished"), timeout=60, what="the version to run")
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output


def _status(project: Any) -> Dict[str, Dict[str, Any]]:
    return {row["version"]: row for row in json.loads(project.run("status", "--json").stdout)}


WARNED_TORCH = TORCH_SCRIPT.replace("CHECKPOINT_EVERY", "1000").replace("sleep=0.05", "sleep=0.3")
"""Checkpoints only when warned, and at the end: 39 steps of 0.3 s."""


def test_the_warning_before_the_time_limit_makes_the_torch_base_save_and_a_resume_starts_there(slurm_project, slurm):
    project = slurm_project
    project.script("net.py", WARNED_TORCH, prelude=False)
    project.queue(["net.py"])
    _slurm_config(project)
    daemon = project.start("-r", "-u")
    try:
        project.wait_for(lambda: len(project.calls("step")) >= 5 and _started(project, "v1"), timeout=120, what="the version to train")
        job = _job_of(project, "v1")
        slurm.command("scancel", "--batch", "--signal=USR1", job)  # what --signal=B:USR1@N sends
        warned_at = project.calls("step")[-1]["step"]
        checkpoint = Path(project.calls("train")[0]["model_dir"]) / "mlpipeline-checkpoint.pt"
        try:
            project.wait_for(checkpoint.exists, timeout=30, what="the warned version's checkpoint")
        except AssertionError:  # it failed once in a full run: say what the job and the daemon saw
            outs = {str(path): path.read_text(errors="replace")[-3000:] for path in (project.outputs / "slurm-jobs").glob("*/slurm.out")}
            raise AssertionError(f"no checkpoint after USR1 at step {warned_at}; steps since: {project.calls('step')[-3:]}\n"
                                 f"jobs: {slurm.jobs()}\n{outs}\n{project.log_text()[-4000:]}") from None
        slurm.command("scontrol", "requeue", job)
        output, _ = daemon.communicate(timeout=180)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert _events(project, "v1") == ["started", "interrupted", "started", "finished"], project.journal()
    first, second = project.calls("train")
    assert second["restored"] and warned_at <= second["from"] < 39, (warned_at, second)


@pytest.mark.slow
def test_a_version_past_its_time_limit_is_cut_off_and_resumed(slurm_project):
    project = slurm_project
    gate = project.root / "may train"
    stalls = (
        "class Stalls(Counting):\n"
        "    def train_model(self, input_fn, steps):\n"
        "        while not os.path.exists(self.current_version['gate']):  # the first job never gets past this\n"
        "            time.sleep(0.1)\n"
        "        super().train_model(input_fn, steps)\n"
    )
    code = versions_code(f'versions.addV("slow", gpus=0, gate={str(gate)!r})').replace("MODEL = Counting(", stalls + "MODEL = Stalls(")
    project.script("net.py", code)
    project.queue(["net.py"])
    _slurm_config(project, slurm='time = "1"')  # a minute: Slurm ends the job up to 30 s after it
    daemon = project.start("-r", "-u")
    try:
        project.wait_for(lambda: "interrupted" in _events(project, "slow"), timeout=150, what="the job to reach its time limit")
        gate.touch()
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert _events(project, "slow") == ["started", "interrupted", "started", "finished"], project.journal()
    interrupted = next(row for row in project.journal() if row["event"] == "interrupted")
    assert "reached its time limit" in interrupted["reason"], interrupted


def test_a_node_taken_down_mid_version_is_cut_off_and_resumed_when_it_is_back(slurm_project, slurm):
    project = slurm_project
    _queue_long(project, epochs=4)
    daemon = project.start("-r", "-u")
    try:
        _wait_until_training(project)
        time.sleep(1)
        slurm.command("scontrol", "update", "nodename=mlpnode", "state=down", "reason=mlpipeline test")
        project.wait_for(lambda: "interrupted" in _events(project, "long"), timeout=60, what="the version to be cut off")
        slurm.resume_node()
        output, _ = daemon.communicate(timeout=180)
    finally:
        daemon.kill()
        slurm.command("scontrol", "update", "nodename=mlpnode", "state=resume", check=False)
    assert daemon.returncode == 0, output
    assert _events(project, "long") == ["started", "interrupted", "started", "finished"], project.journal()
    first, second = project.calls("train")
    assert second["start"] > 0 and second["start"] + second["steps"] == first["start"] + first["steps"]


def test_two_daemons_never_run_a_version_twice(slurm_project):
    project = slurm_project
    project.script("net.py", versions_code(*[f'versions.addV("v{i}", gpus=0, model_dir_suffix="{i}", sleep_per_step=0.05)' for i in range(6)]))
    project.queue(["net.py"])
    _slurm_config(project, "workers = 2")
    daemons = [project.start("-r", "-u") for _ in range(2)]
    try:
        outputs = [daemon.communicate(timeout=240)[0] for daemon in daemons]
    finally:
        for daemon in daemons:
            daemon.kill()
    assert [daemon.returncode for daemon in daemons] == [0, 0], outputs
    assert sorted(call["version"] for call in project.calls("train")) == [f"v{i}" for i in range(6)]
    started = [row["version"] for row in project.journal() if row["event"] == "started"]
    assert sorted(started) == [f"v{i}" for i in range(6)]


def test_settings_sbatch_refuses_are_named_with_their_line_in_mlp_config(slurm_project):
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("v", gpus=0)'))
    project.queue(["net.py"])
    _slurm_config(project, slurm='partition = "gpu"\ntime = "04:00:00"')
    done = project.run("-r")
    assert done.returncode != 0
    text = done.output
    assert "mlp.config:6:" in text and "invalid partition specified: gpu" in text and "[SLURM]: partition" in text, text
    assert "Traceback" not in text
    assert not project.calls("train")


def test_without_slurms_commands_the_daemon_says_where_to_run(slurm_project):
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("v", gpus=0)'))
    project.queue(["net.py"])
    _slurm_config(project)
    done = project.run("-r", env={"PATH": "/nonexistent"})
    assert done.returncode != 0
    assert "sbatch" in done.output and "not found on PATH" in done.output and "login node" in done.output, done.output
    assert "Traceback" not in done.output


def test_a_project_folder_the_node_does_not_see_is_named(slurm_project, tmp_path):
    """The daemon sees the project at a path (a bind mount of its own mount namespace) where
    the node sees an empty folder: the probe job at the start finds it, and the daemon says so."""
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("v", gpus=0)'))
    project.queue(["net.py"])
    _slurm_config(project)
    seen_only_here = tmp_path / "mounted here only"
    seen_only_here.mkdir()
    inner = " ".join(
        [
            f"mount --bind {shlex.quote(str(project.root))} {shlex.quote(str(seen_only_here))} &&",
            "exec", *map(shlex.quote, project.command()[:3]), "-C", shlex.quote(str(seen_only_here)), "-r",
        ]
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True, timeout=180, env=project._env(None))
    said = done.stdout + done.stderr
    assert done.returncode == 2, said  # found at the start, before anything runs
    assert "mlp.config" in said and "could not read and write the outputs folder" in said and str(seen_only_here) in said, said
    assert "same path" in said and "docs/cluster.md" in said and "Traceback" not in said
    assert not project.calls("train") and not project.results()


HOSTILE = [b"", b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"result": 5, "returncode": "x", "signals": "SIGTERM", "cpu_s": true}', b'{"a": 1}{"b": 2}']


@pytest.mark.parametrize("content", HOSTILE)
def test_a_job_folder_survives_any_bytes_in_its_files(tmp_path, content):
    """What the daemon reads back from a job's folder (written by a job on another machine,
    or by anyone who can write the shared folder) never crashes it."""
    from mlpipeline.executors.job_folder import JobFolder, OutputReader

    folder = JobFolder(tmp_path)
    for path in (folder.end, folder.placed, folder.submitted, folder.delivered, folder.request):
        path.write_bytes(content)
    folder.output.write_bytes(content + b'\n{"stream": "stdout", "lines": ["kept", 3]}\n' + content + b'\n{"event": {"type": "log"}}\n{"event": 7}\n')
    end = folder.read_end()
    assert end is not None and (end["result"] is None or isinstance(end["result"], dict))
    assert end["returncode"] is None and end["cpu_s"] is None and end["signals"] == []
    placed = folder.read_placed()
    assert placed is None or (isinstance(placed["gpus"], list) and all(isinstance(value, (str, int, list)) for value in placed.values()))
    assert folder.job_id() is None and folder.delivered_offset() == 0
    said = OutputReader(folder).read_new()
    assert ("lines", "stdout", ["kept", "3"]) in said and ("event", {"type": "log"}) in said
    assert all(item[0] in ("lines", "event") for item in said)
    # An offset past the end (a file replaced since) starts over at its beginning.
    assert OutputReader(folder, 10**9).read_new() == said


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_job_folder_whose_files_are_no_regular_files_blocks_nothing(tmp_path, kind):
    """A FIFO in place of output.jsonl would hold the daemon in open() for ever; a folder would
    raise. Each is read as nothing, and an end.json that is none as an end that says nothing."""
    import os

    from mlpipeline.executors.job_folder import JobFolder, OutputReader

    folder = JobFolder(tmp_path)
    for path in (folder.output, folder.end, folder.placed, folder.submitted, folder.delivered):
        os.mkfifo(path) if kind == "fifo" else path.mkdir()
    started = time.monotonic()
    assert OutputReader(folder).read_new() == []
    end = folder.read_end()  # an end that says nothing: recorded as a job that ended without its version's word
    assert end is not None and end["result"] is None and end["returncode"] is None and folder.read_placed() is None
    assert folder.job_id() is None and folder.delivered_offset() == 0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "table, said",
    [
        ('time = "4 hours"', "mlp.config:6: time must be a time limit as sbatch takes it"),
        ('sbatch_args = "--mem=4G"', "mlp.config:6: sbatch_args must be a list of sbatch options"),
        ('partiton = "gpu"', "mlp.config:6: 'partiton' is not a key of [SLURM]; did you mean 'partition'?"),
    ],
)
def test_a_slip_in_the_slurm_table_is_named_with_its_line(project, table, said):
    project.script("net.py", versions_code('versions.addV("v", gpus=0)'))
    project.queue(["net.py"])
    _slurm_config(project, slurm=table)
    done = project.run("-r")
    assert done.returncode == 2 and said in done.output and "Traceback" not in done.output, done.output


def _misbehaving(project: Any, *commands: str) -> Dict[str, str]:
    """A PATH on which each of ``commands`` is Slurm's own, unless the file ``<name>.mode`` in
    the project says ``empty`` (its answer about every job of the user, ``--me``, holds
    nothing, exit 0) or ``fail`` (exit 1): a Slurm command that lies or breaks for a while,
    as an overloaded controller's do."""
    import os

    folder = project.root / "slurm-bin"
    folder.mkdir()
    for name in commands:
        real = shutil.which(name)
        mode = project.root / f"{name}.mode"
        (folder / name).write_text(
            f'#!/bin/sh\ncase "$(cat {shlex.quote(str(mode))} 2>/dev/null)" in\n  empty) case " $* " in *" --me "*) exit 0;; esac;;\n  fail) echo "{name}: error: slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1;;\nesac\n'
            f'exec {shlex.quote(str(real))} "$@"\n'
        )
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_a_job_squeue_leaves_out_for_a_while_is_not_resumed_beside_itself(slurm_project, slurm):
    # squeue answering without the job (an overloaded controller, a federation's other half):
    # taken as over, the version was resumed while its job still trained in the same model_dir.
    project = slurm_project
    _queue_long(project, epochs=5)
    env = _misbehaving(project, "squeue")
    daemon = project.start("-r", "-u", env=env)
    try:
        _wait_until_training(project)
        (project.root / "squeue.mode").write_text("empty")
        time.sleep(12)  # past the grace a job over gets to write its end
        (project.root / "squeue.mode").unlink()
        output, _ = daemon.communicate(timeout=240)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert _events(project, "long") == ["started", "finished"], project.journal()
    assert len(project.calls("train")) == 1


def test_an_end_file_that_says_nothing_while_the_job_runs_is_no_end(slurm_project, slurm):
    project = slurm_project
    _queue_long(project, epochs=4)
    daemon = project.start("-r", "-u")
    try:
        _wait_until_training(project)
        folder = _job_folder(project)
        (folder / "end.json").write_text("garbage")
        output, _ = daemon.communicate(timeout=240)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert _events(project, "long") == ["started", "finished"], project.journal()


def test_a_job_whose_folder_is_removed_ends_itself(slurm_project, slurm):
    # The daemon removes a job's folder once it has recorded the job's end: a job that still
    # runs then (its node stopped answering, and came back) must not train beside the resume.
    project = slurm_project
    _queue_long(project, epochs=20)
    daemon = project.start("-r", "-u")
    try:
        _wait_until_training(project)
        folder = _job_folder(project)
        shutil.rmtree(folder)
        _no_version_process_left(project, timeout=20)  # of its 40 s of training
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    [row] = project.results()
    assert row["status"] == "failed" and "without its version's end" in row["reason"], output


def test_sinfo_that_cannot_answer_at_the_start_is_said_not_blamed_on_a_version(slurm_project):
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("v", gpus=1)'))
    project.queue(["net.py"])
    _slurm_config(project)
    env = _misbehaving(project, "sinfo")
    (project.root / "sinfo.mode").write_text("fail")
    done = project.run("-r", env=env)
    assert done.returncode == 2 and "sinfo cannot say what GPUs the nodes have" in done.output, done.output
    assert project.results() == [] and "Traceback" not in done.output


def test_a_job_scancelled_by_hand_is_recorded_cancelled_not_resumed(slurm_project, slurm):
    # It was taken for Slurm's doing and resumed, again and again: a user could not stop it so.
    project = slurm_project
    _queue_long(project, 6, 'versions.addV("next", gpus=0)')
    daemon = project.start("-r", "-u")
    try:
        _wait_until_training(project)
        job = _job_of(project, "long")
        slurm.command("scancel", job)
        output, _ = daemon.communicate(timeout=180)
    finally:
        daemon.kill()
    assert _events(project, "long") == ["started", "cancelled"], project.journal()
    [row] = [row for row in project.results() if row["version"] == "long"]
    assert row["status"] == "cancelled" and f"its Slurm job {job}" in row["reason"] and "cancelled outside mlpipeline" in row["reason"]
    assert [call["version"] for call in project.calls("train")] == ["long", "next"]  # the queue went on
    assert daemon.returncode == 0, output


def test_a_version_cut_off_again_and_again_is_resumed_three_times_in_a_session(slurm_project, slurm):
    # Its own interrupted end also made the claims count it cut off, which started it again
    # past the cap: requeued without end, it was resumed without end.
    project = slurm_project
    _queue_long(project, epochs=30)
    daemon = project.start("-r", "-u")
    try:
        for cut in range(1, 5):
            project.wait_for(lambda: len(project.calls("train")) == cut and len(_started(project, "long")) == cut, timeout=90, what=f"run {cut} to train")
            slurm.command("scontrol", "requeue", _job_of(project, "long"))
            project.wait_for(lambda: _events(project, "long").count("interrupted") == cut, timeout=90, what=f"cut-off {cut}")
        output, _ = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert _events(project, "long") == ["started", "interrupted"] * 4, project.journal()
    assert "cut off 4 times in this session: not resumed again now" in project.log_text()
    assert len(project.calls("train")) == 4, output


def test_a_stop_scancel_cannot_send_is_said_and_the_record_stays_true(slurm_project, slurm):
    # scancel's exit status was never looked at: a stop that reached no job said nothing.
    project = slurm_project
    _queue_long(project, epochs=4)
    env = _misbehaving(project, "scancel")
    (project.root / "scancel.mode").write_text("fail")
    daemon = project.start("-r", "-u", env=env)
    try:
        _wait_until_training(project)
        job = _job_of(project, "long")
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    assert f"Slurm job {job} could not be stopped (scancel: slurm_load_jobs error: Unable to contact slurm controller); mlpipeline tries again while it runs" in output, output
    # The job went on to its end, and that is what is recorded.
    assert _events(project, "long") == ["started", "finished"], project.journal()


def test_an_squeue_that_hangs_holds_up_no_versions_end(slurm_project, slurm):
    # Every look began with squeue: while it hung (up to its 60 s), no job's folder was read,
    # and a version that ended meanwhile was recorded a minute late, with that minute's duration.
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("short", gpus=0, sleep_per_step=0.2)', defaults="learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=2"))
    project.queue(["net.py"])
    _slurm_config(project)
    folder = project.root / "slurm-bin"
    env = _misbehaving(project, "squeue")
    mode = project.root / "squeue.mode"
    real = (folder / "squeue").read_text()
    (folder / "squeue").write_text(real.replace("  fail)", "  hang) sleep 50;;\n  fail)"))
    daemon = project.start("-r", "-u", env=env)
    try:
        _wait_until_training(project, "short")
        mode.write_text("hang")
        project.wait_for(lambda: project.calls("trained"), timeout=30, what="training to end")
        ended = time.monotonic()
        project.wait_for(lambda: "finished" in _events(project, "short"), timeout=40, what="its end to be recorded")
        assert time.monotonic() - ended < 20
        mode.unlink()
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    [row] = project.results()
    assert row["status"] == "finished" and row["duration_s"] < 20, row


def test_settings_for_gpu_jobs_in_sbatch_args_do_not_stop_the_start(slurm_project, slurm):
    # The start's check asked for no GPU, which sbatch refuses with --mem-per-gpu: a common
    # setting of GPU sites stopped the daemon before anything ran.
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("gpu", gpus=1, model_dir_suffix="g")', 'versions.addV("none", gpus=0, model_dir_suffix="n")'))
    project.queue(["net.py"])
    _slurm_config(project, slurm='sbatch_args = ["--mem-per-gpu=100"]')
    done = project.run("-r", timeout=180)
    rows = {row["version"]: row for row in project.results()}
    assert rows["gpu"]["status"] == "finished", done.output
    # A version that asks for no GPU cannot be given --mem-per-gpu: sbatch's words name why.
    assert rows["none"]["status"] == "failed" and "did not request any GPU" in rows["none"]["reason"], rows["none"]


def test_a_job_held_in_slurms_queue_is_said_with_what_lets_it_run(slurm_project, slurm):
    project = slurm_project
    blocker, daemon = _waiting_behind_a_taken_node(project, slurm, "gpus=0", "-r")
    try:
        # The one waiting: earlier tests' jobs of the same name stay listed, ended, for a while.
        job = next(row["id"] for row in slurm.jobs() if row["name"] == "mlp:net.py:queued" and row["state"] == "PENDING")
        slurm.command("scontrol", "hold", job)
        # Root's hold is an admin's (JobHeldAdmin); a user's own is JobHeldUser.
        said = f"its Slurm job {job} waits in Slurm's queue: JobHeldAdmin (held by the cluster's admins: it runs once they release it)"
        project.wait_for(lambda: said in project.log_text(), timeout=30, what="the hold to be said")
        slurm.command("scontrol", "release", job)
        slurm.command("scancel", blocker)
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, output
    assert said in output and project.log_text().count("waits in Slurm's queue") == 1


def test_a_job_whose_request_was_removed_while_it_waited_names_the_file(slurm_project, slurm):
    project = slurm_project
    blocker, daemon = _waiting_behind_a_taken_node(project, slurm, "gpus=0", "-r", "-u")
    try:
        request = _job_folder(project) / "request.json"
        request.unlink()
        slurm.command("scancel", blocker)
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    [row] = project.results()
    assert row["status"] == "failed" and str(request) in row["reason"] and "removed while the job waited" in row["reason"], row
    assert not project.calls("train") and "Traceback" not in output


def test_a_controller_out_of_reach_at_a_submission_fails_no_version(slurm_project, slurm):
    # sbatch's "Unable to contact slurm controller" failed the version for good (-u skipped it),
    # and every version after it met the same.
    project = slurm_project
    project.script("net.py", versions_code('versions.addV("first", gpus=0, sleep_per_step=0.1, model_dir_suffix="f")', 'versions.addV("second", gpus=0, model_dir_suffix="s")', 'versions.addV("third", gpus=0, model_dir_suffix="t")'))
    project.queue(["net.py"])
    _slurm_config(project)
    env = _misbehaving(project, "sbatch")
    daemon = project.start("-r", "-u", env=env)
    try:
        project.wait_for(lambda: len(project.calls("train")) == 1, timeout=90, what="the first version to train")
        (project.root / "sbatch.mode").write_text("fail")
        output, _ = daemon.communicate(timeout=120)
    finally:
        daemon.kill()
    assert daemon.returncode == 2, output
    assert "its scheduler does not answer (sbatch could not reach the controller: " in output and "stopped dispatching" in output, output
    rows = {row["version"]: row["status"] for row in project.results()}
    assert rows == {"first": "finished", "second": "interrupted"}, rows
    (project.root / "sbatch.mode").unlink()
    again = project.run("-r", "-u", env=env, timeout=180)
    assert again.returncode == 0, again.output
    assert sorted(call["version"] for call in project.calls("train")) == ["first", "second", "third"]
