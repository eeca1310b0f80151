"""SPEC 6: several versions at once, each with GPUs of its own, and an idle daemon that waits."""
import itertools
import json
import signal

import pytest

from conftest import alive, kill_tree, versions_code

# 100 samples, batch 50, 1 epoch: 2 steps; with 0.4 s a step a version trains for 0.8 s.
TWO_STEPS = "learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=1"


def settings(project, **keys):
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\n{extra}')


def intervals(project):
    """Per version: (start, end, CUDA_VISIBLE_DEVICES it saw)."""
    starts = {c["version"]: c for c in project.calls("train")}
    ends = {c["version"]: c["t"] for c in project.calls("trained")}
    return {name: (call["t"], ends[name], call["cuda"]) for name, call in starts.items()}


def overlapping(spans):
    return [(a, b) for a, b in itertools.combinations(spans, 2) if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]


def test_each_running_version_gets_gpus_of_its_own(project):
    settings(project, workers=3, gpus="[0, 1]")
    lines = [f'versions.addV("whole{i}", sleep_per_step=0.4, model_dir_suffix="whole{i}")' for i in range(4)]
    lines += [
        'versions.addV("cpu", gpus=0, sleep_per_step=0.4, model_dir_suffix="cpu")',
        'versions.addV("half_a", gpus=0.5, sleep_per_step=0.4, model_dir_suffix="half_a")',
        'versions.addV("half_b", gpus=0.5, sleep_per_step=0.4, model_dir_suffix="half_b")',
    ]
    project.script("a.py", versions_code(*lines, defaults=TWO_STEPS))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    spans = intervals(project)
    assert len(spans) == 7
    for name, (_, _, cuda) in spans.items():
        if name == "cpu":
            assert cuda == ""  # a CPU-only version never holds a GPU
        else:
            assert cuda in ("0", "1")
    pairs = overlapping(spans)
    assert pairs, "versions never ran at once"
    for a, b in pairs:
        if spans[a][2] and spans[a][2] == spans[b][2]:
            assert a.startswith("half") and b.startswith("half"), f"{a} and {b} shared GPU {spans[a][2]}"
    for trio in itertools.combinations(spans, 4):
        assert not all(spans[x][0] < spans[y][1] and spans[y][0] < spans[x][1] for x, y in itertools.combinations(trio, 2))
    records = {r["version"]: r for r in project.results()}
    assert records["cpu"]["gpus"] == [] and records["whole0"]["gpus"] in (["0"], ["1"])
    assert "GPU 0" in project.log_text() and "GPU 1" in project.log_text()


def test_gpu_requests_that_cannot_be_met_fail_with_a_reason(project):
    settings(project, gpus="[0]")
    project.script("a.py", versions_code('versions.addV("two", gpus=2)', 'versions.addV("odd", gpus=1.5)', 'versions.addV("one")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1
    reasons = {r["version"]: r["reason"] for r in project.results()}
    assert reasons["two"] == "a.py:two asks for 2 GPUs; this daemon has 1"
    assert reasons["odd"] == "a.py:odd: gpus above 1 must be a whole number, not 1.5"
    assert reasons["one"] is None


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_run_versions_at_once_and_a_freed_slot_takes_the_next(project, workers):
    lines = [f'versions.addV("v{i}", sleep_per_step=0.4, model_dir_suffix="v{i}")' for i in range(5)]
    project.script("a.py", versions_code(*lines, defaults=TWO_STEPS))
    project.queue(["a.py"])
    result = project.run("-r", "--workers", str(workers))
    assert result.returncode == 0, result.output
    claimed = [e["version"] for e in project.journal() if e["event"] == "claimed"]
    assert claimed == [f"v{i}" for i in range(5)]  # dispatched in queue order
    assert len(overlapping(intervals(project))) >= workers - 1
    assert f"workers {workers}" in project.log_text()


@pytest.mark.parametrize("workers", [2, 3])
def test_ctrl_c_stops_every_running_version(project, workers):
    lines = [f'versions.addV("v{i}", wait_for="never", grandchildren=[True], model_dir_suffix="v{i}")' for i in range(workers + 1)]
    project.script("a.py", versions_code(*lines))
    project.queue(["a.py"])
    daemon = project.start("-r", "--workers", str(workers))
    project.wait_for(lambda: len(project.calls("grandchild")) == workers, what="every slot to be busy")
    daemon.send_signal(signal.SIGINT)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 130
    statuses = [r["status"] for r in project.results()]
    assert statuses == ["interrupted"] * workers
    for call in project.calls("train") + project.calls("grandchild"):
        assert not alive(call["pid"])


@pytest.mark.parametrize("workers", [2, 3])
def test_a_power_cut_with_several_running_resumes_them_all_first(project, workers):
    lines = [f'versions.addV("v{i}", sleep_per_step=0.05, epoc_count=10, model_dir_suffix="v{i}")' for i in range(workers + 1)]
    project.script("a.py", versions_code(*lines))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u", "--workers", str(workers))
    checkpoints = [project.outputs / "model_ckpts" / f"a-v{i}" / "steps.txt" for i in range(workers)]
    project.wait_for(
        lambda: all(path.exists() and int(path.read_text() or 0) >= 3 for path in checkpoints),
        what="every slot to train a few steps",
    )
    kill_tree(daemon.pid)
    daemon.communicate()
    assert project.run("-r", "-u", "--workers", "1").returncode == 0
    trains = project.calls("train")
    resumed = trains[workers : 2 * workers]
    assert sorted(c["version"] for c in resumed) == [f"v{i}" for i in range(workers)]  # cut off: first
    assert all(c["start"] > 0 for c in resumed)  # each continued from its checkpoint
    assert trains[-1]["version"] == f"v{workers}"
    assert sorted(r["version"] for r in project.results()) == [f"v{i}" for i in range(workers + 1)]


def test_a_timeout_in_one_slot_does_not_hold_up_the_others(project):
    settings(project, workers=2, version_timeout=2)
    project.script(
        "a.py",
        versions_code(
            'versions.addV("hangs", wait_for="never", model_dir_suffix="hangs")',
            'versions.addV("b", model_dir_suffix="b")',
            'versions.addV("c", model_dir_suffix="c")',
        ),
    )
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1
    statuses = {r["version"]: r["status"] for r in project.results()}
    assert statuses == {"hangs": "timed_out", "b": "finished", "c": "finished"}
    assert [r["version"] for r in project.results()][:2] == ["b", "c"]  # both ended while it hung


def test_wait_keeps_the_daemon_until_the_queue_has_work(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue([])
    daemon = project.start("-r", "-u", "--wait", env={"MLPIPELINE_HEARTBEAT_S": "0.2"})
    project.wait_for(lambda: "waiting for models.config or a script to change" in project.log_text(), what="idle")
    assert daemon.poll() is None
    project.queue(["a.py"])
    project.wait_for(lambda: project.results(), what="the new version to run")
    project.wait_for(lambda: project.log_text().count("waiting for models.config") == 2, what="idle again")
    script = project.models / "a.py"
    script.write_text(script.read_text() + "\n# an edit\n")  # with -u an edit is new work
    project.wait_for(lambda: len(project.results()) == 2, what="the edited version to run")
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 143
    assert [r["status"] for r in project.results()] == ["finished", "finished"]


def test_versions_a_module_beside_the_script_adds_are_seen_when_the_module_changes(project):
    # The grid lives in sweep.py; a.py's bytes never change.
    project.write("models/sweep.py", 'NAMES = ["v1"]\n')
    project.script("a.py", "from sweep import NAMES\n" + versions_code("for name in NAMES: versions.addV(name, model_dir_suffix=name)"))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u", "--wait", env={"MLPIPELINE_HEARTBEAT_S": "0.2"})
    project.wait_for(lambda: "waiting for models.config or a script to change" in project.log_text(), what="idle")
    project.write("models/sweep.py", 'NAMES = ["v1", "v2"]  # one more\n')
    # status, which reads the listing a daemon kept, lists the script again too.
    shown = project.run("status", "--json")
    assert {row["version"]: row["state"] for row in json.loads(shown.stdout)}.get("v2") in ("pending", "running", "finished"), shown.output
    project.wait_for(lambda: len(project.results()) == 2, what="the version the module added to run")
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=30)
    assert [(r["version"], r["status"]) for r in project.results()] == [("v1", "finished"), ("v2", "finished")]


def test_versions_that_share_a_model_dir_never_run_at_once(project):
    lines = [f'versions.addV("v{i}", sleep_per_step=0.3)' for i in range(3)]  # no suffix: one model_dir
    project.script("a.py", versions_code(*lines, defaults=TWO_STEPS))
    project.script("b.py", versions_code('versions.addV("w", sleep_per_step=0.3)', defaults=TWO_STEPS))
    project.queue(["a.py", "b.py"])
    assert project.run("-r", "--workers", "3").returncode == 0
    spans = intervals(project)
    pairs = overlapping(spans)
    for a, b in pairs:
        assert "w" in (a, b), f"{a} and {b} ran at once in one model_dir"
    assert pairs, "b.py:w should have run beside a.py's versions, which wait for each other"
