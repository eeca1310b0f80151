"""SPEC 6: several daemons on one project folder never run one version twice."""
from collections import Counter

import pytest
from conftest import kill_tree, versions_code

FAST_BEATS = {"MLPIPELINE_HEARTBEAT_S": "0.2"}


def eight_versions(project):
    lines = [f'versions.addV("v{i}", sleep_per_step=0.25, model_dir_suffix="v{i}")' for i in range(8)]
    # 100 samples, batch 50, 1 epoch: 2 steps of 0.25 s, so each version takes about half a second.
    project.script("a.py", versions_code(*lines, defaults="learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=1"))
    project.queue(["a.py"])


@pytest.mark.parametrize("flags", [["-r", "-u"], ["-r"], ["-r", "-u", "--workers", "2"], ["-r", "--workers", "3"]])
def test_two_daemons_on_one_host_share_the_queue(project, flags):
    eight_versions(project)
    first, second = project.start(*flags), project.start(*flags)
    for daemon in (first, second):
        output, _ = daemon.communicate(timeout=90)
        assert daemon.returncode == 0, output
    journal = project.journal()
    for event in ("claimed", "started", "finished"):
        counts = Counter(e["version"] for e in journal if e["event"] == event)
        assert counts == {f"v{i}": 1 for i in range(8)}, (event, counts)
    assert len({e["daemon"] for e in journal if e["event"] == "finished"}) == 2  # both did work
    assert len(project.calls("train")) == 8
    assert not list((project.outputs / ".heartbeats").iterdir())  # both cleaned up


def test_a_dead_hosts_claim_is_taken_over_and_resumed(project):
    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.05, epoc_count=10)'))
    project.queue(["a.py"])
    host_a = project.start("-r", "-u", env={"MLPIPELINE_HOSTNAME": "host-a", **FAST_BEATS})
    checkpoint = project.outputs / "model_ckpts" / "a" / "steps.txt"
    project.wait_for(lambda: checkpoint.exists() and int(checkpoint.read_text() or 0) >= 5, what="host-a to train")
    kill_tree(host_a.pid)  # host-a loses power; its heartbeat file stays behind, unchanging
    host_a.communicate()
    cut_at = int(checkpoint.read_text())

    host_b = project.run("-r", "-u", env={"MLPIPELINE_HOSTNAME": "host-b", **FAST_BEATS})
    assert host_b.returncode == 0, host_b.output
    journal = project.journal()
    takeover = [e for e in journal if e["event"] == "interrupted"]
    assert len(takeover) == 1
    assert takeover[0]["host"] == "host-b" and takeover[0]["taken_over_from"].startswith("host-a:")
    assert "on host-a" in takeover[0]["reason"] and "stopped heartbeating" in takeover[0]["reason"]
    resumed = project.calls("train")[-1]
    assert resumed["start"] == cut_at and resumed["steps"] == 100 - cut_at
    assert [(e["event"], e["host"]) for e in journal if e["event"] in ("started", "finished")] == [
        ("started", "host-a"),
        ("started", "host-b"),
        ("finished", "host-b"),
    ]


def test_a_live_hosts_claim_is_left_alone(project):
    project.script("a.py", versions_code('versions.addV("held", wait_for="go")', 'versions.addV("free")'))
    project.queue(["a.py"])
    host_a = project.start("-r", "-u", env={"MLPIPELINE_HOSTNAME": "host-a", **FAST_BEATS})
    project.wait_for(lambda: project.calls("train"), what="host-a to start the held version")
    host_b = project.run("-r", "-u", env={"MLPIPELINE_HOSTNAME": "host-b", **FAST_BEATS})
    assert host_b.returncode == 0, host_b.output
    (project.root / "go").touch()
    output, _ = host_a.communicate(timeout=60)
    assert host_a.returncode == 0, output
    finished = [(e["version"], e["host"]) for e in project.journal() if e["event"] == "finished"]
    assert sorted(finished) == [("free", "host-b"), ("held", "host-a")]
    assert not [e for e in project.journal() if e["event"] == "interrupted"]
