"""SPEC 6: several daemons on one project folder never run one version twice, and every queued
version ends finished exactly once while any of them lives."""
import os
import re
import shutil
import signal
import time
from collections import Counter

import pytest
from conftest import alive, kill_tree, versions_code

FAST_BEATS = {"MLPIPELINE_HEARTBEAT_S": "0.2"}


def ended_with_0(*daemons, timeout):
    """Wait for each daemon to end, each with exit code 0; their outputs."""
    outputs = []
    for daemon in daemons:
        output, _ = daemon.communicate(timeout=timeout)
        assert daemon.returncode == 0, output
        outputs.append(output)
    return outputs


def eight_versions(project):
    lines = [f'versions.addV("v{i}", sleep_per_step=0.25, model_dir_suffix="v{i}")' for i in range(8)]
    # 100 samples, batch 50, 1 epoch: 2 steps of 0.25 s, so each version takes about half a second.
    project.script("a.py", versions_code(*lines, defaults="learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=1"))
    project.queue(["a.py"])


@pytest.mark.parametrize("flags", [["-r", "-u"], ["-r"], ["-r", "-u", "--workers", "2"], ["-r", "--workers", "3"]])
def test_two_daemons_on_one_host_share_the_queue(project, flags):
    eight_versions(project)
    first, second = project.start(*flags), project.start(*flags)
    outputs = ended_with_0(first, second, timeout=90)
    journal = project.journal()
    for event in ("claimed", "started", "finished"):
        counts = Counter(e["version"] for e in journal if e["event"] == event)
        assert counts == {f"v{i}": 1 for i in range(8)}, (event, counts)
    assert len({e["daemon"] for e in journal if e["event"] == "finished"}) == 2  # both did work
    assert len(project.calls("train")) == 8
    for daemon, output in zip((first, second), outputs):
        # Each daemon's last count holds the whole queue: what the other daemon ran or runs is
        # said to be its, neither pending nor (-u) skipped, which the first release said.
        lines = [line for line in output.splitlines() if line.startswith("queue: ")]
        for line in lines:  # no line counts a version twice
            assert sum(int(n) for n in re.findall(r"(\d+) [a-z]", line)) <= 8, line
        last = lines[-1]
        counts = dict((words, int(n)) for n, words in re.findall(r"(\d+) ([a-z ]+)", last[len("queue: "):]))
        assert sum(counts.values()) == 8 and "pending" not in counts, last
        finished_here = sum(e["event"] == "finished" and e["pid"] == daemon.pid for e in journal)
        assert counts["finished"] == finished_here, last
        assert "skipped" not in output and "not started" not in output, output
    assert not list((project.outputs / ".heartbeats").iterdir())  # both cleaned up


def test_a_daemon_alone_counts_no_other_daemon_and_says_what_a_cancel_took(project):
    # Its own version, ended but not yet recorded, was once counted "running under other
    # daemons" (a probe, about once a run); a queued version cancelled fell out of the counts,
    # and the end summary called it "not started".
    lines = [f'versions.addV("v{i}", sleep_per_step=0.1, model_dir_suffix="v{i}")' for i in range(6)]
    lines.append('versions.addV("late", wait_for="go", model_dir_suffix="late")')
    project.script("a.py", versions_code(*lines, defaults="learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=2"))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u", "--workers", "2")
    project.wait_for(lambda: project.calls("train"), what="the first version")
    cancel = project.run("cancel", "a.py:v5")
    assert cancel.returncode == 0, cancel.output
    project.wait_for(lambda: any(c["version"] == "late" for c in project.calls("train")), timeout=60, what="the last version")
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, output
    assert "other daemons" not in output, output
    [*_, last] = [line for line in output.splitlines() if line.startswith("queue: ")]
    assert last == "queue: 6 finished, 1 cancelled", output
    [summary] = [line for line in output.splitlines() if "; records in " in line]
    assert summary.startswith("6 finished, 1 cancelled before it started; records in "), output


@pytest.mark.parametrize("flags", [["-r"], ["-r", "-u"]])
def test_two_daemons_never_run_two_versions_in_one_model_dir(project, flags):
    # Versions without MODEL_DIR_SUFFIX share one model_dir; a fresh run cleans it. Two daemons
    # once ran two of them at once: one cleaned the folder under the other, whose run record
    # could not be written ("failed ... No such file or directory"), in the first of two probes.
    lines = [f'versions.addV("v{i}", sleep_per_step=0.15)' for i in range(4)]
    project.script("a.py", versions_code(*lines, defaults="learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=2"))
    project.queue(["a.py"])
    first, second = project.start(*flags), project.start(*flags)
    ended_with_0(first, second, timeout=120)
    journal = project.journal()
    assert Counter(e["version"] for e in journal if e["event"] == "finished") == {f"v{i}": 1 for i in range(4)}, journal
    # One at a time: each claim follows the end of the version claimed before it.
    order = [e["event"] for e in journal if e["event"] in ("claimed", "finished")]
    assert order == ["claimed", "finished"] * 4, order
    # Named from outputs_dir, as every host sharing the folder names it wherever it mounts it.
    assert {e.get("model_dir") for e in journal if e["event"] in ("claimed", "started")} == {"model_ckpts/a"}
    assert not [e for e in journal if e["event"] in ("failed", "interrupted")]
    assert len(project.calls("train")) == 4


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
    [started_a] = [e for e in journal if e["event"] == "started" and e["host"] == "host-a"]
    # A run id of its own (the dead run's end may lie half committed, told by the dead run's id).
    assert takeover[0]["attempt"] == started_a["attempt"] and takeover[0]["run_id"] not in (None, started_a["run_id"])
    assert "on host-a" in takeover[0]["reason"] and "stopped heartbeating" in takeover[0]["reason"]
    resumed = project.calls("train")[-1]
    assert resumed["start"] == cut_at and resumed["steps"] == 100 - cut_at
    assert [(e["event"], e["host"]) for e in journal if e["event"] in ("started", "finished")] == [
        ("started", "host-a"),
        ("started", "host-b"),
        ("finished", "host-b"),
    ]


def test_a_worker_left_by_a_daemon_under_another_host_name_is_ended_before_its_version_resumes(project):
    # One machine whose host name changed between two daemons: the first daemon's pids are not
    # the second's to trust, but a worker of the run, seen here, carries the run's id.
    import psutil

    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.2, epoc_count=3)'))
    project.queue(["a.py"])
    old_name = project.start("-r", "-u", env={"MLPIPELINE_HOSTNAME": "old-name", **FAST_BEATS})
    project.wait_for(lambda: project.calls("train"), what="the version to train")
    keeper = psutil.Process(old_name.pid).children()[0]
    [worker] = keeper.children()
    os.kill(old_name.pid, signal.SIGKILL)
    keeper.kill()  # the daemon and its keeper die; the worker trains on, an orphan
    old_name.communicate()
    assert worker.is_running()
    new_name = project.run("-r", "-u", env={"MLPIPELINE_HOSTNAME": "new-name", **FAST_BEATS}, timeout=120)
    assert new_name.returncode == 0, new_name.output
    assert f"still run (pid {worker.pid}); ended first" in project.log_text()
    assert not alive(worker.pid)
    assert [e["event"] for e in project.journal() if e["host"] == "new-name"] == ["interrupted", "claimed", "started", "finished"]


def test_a_live_hosts_claim_is_left_alone(project):
    project.script("a.py", versions_code('versions.addV("held", wait_for="go", model_dir_suffix="held")', 'versions.addV("free", model_dir_suffix="free")'))
    project.queue(["a.py"])
    host_a = project.start("-r", "-u", env={"MLPIPELINE_HOSTNAME": "host-a", **FAST_BEATS})
    project.wait_for(lambda: project.calls("train"), what="host-a to start the held version")
    host_b = project.start("-r", "-u", env={"MLPIPELINE_HOSTNAME": "host-b", **FAST_BEATS})
    project.wait_for(lambda: "waiting while other daemons run a.py:held on host-a" in project.log_text(), what="host-b to wait")
    time.sleep(2)  # ten beats: host-a's claim stays its own, and host-b stays, in case host-a dies
    assert host_b.poll() is None
    (project.root / "go").touch()
    ended_with_0(host_a, host_b, timeout=60)
    finished = [(e["version"], e["host"]) for e in project.journal() if e["event"] == "finished"]
    assert sorted(finished) == [("free", "host-b"), ("held", "host-a")]
    assert not [e for e in project.journal() if e["event"] == "interrupted"]


def other_host(name):
    return {"MLPIPELINE_HOSTNAME": name, **FAST_BEATS}


def steps_done(project, name="a"):
    path = project.outputs / "model_ckpts" / name / "steps.txt"
    return int(path.read_text() or 0) if path.exists() else 0


def finished_once(project, versions):
    counts = Counter(e["version"] for e in project.journal() if e["event"] == "finished")
    assert counts == {version: 1 for version in versions}, counts


@pytest.mark.parametrize("where", ["same host", "other host"])
def test_the_survivor_of_two_daemons_resumes_the_cut_off_version_in_the_same_session(project, where):
    project.script(
        "a.py",
        versions_code(
            'versions.addV("slow", sleep_per_step=0.02, epoc_count=10, model_dir_suffix="slow")',
            'versions.addV("held", wait_for="go", model_dir_suffix="held")',
        ),
    )
    project.queue(["a.py"])
    env_a, env_b = (FAST_BEATS, FAST_BEATS) if where == "same host" else (other_host("host-a"), other_host("host-b"))
    first = project.start("-r", "-u", env=env_a)
    project.wait_for(lambda: steps_done(project, "a-slow") >= 5, what="the first daemon to train")
    second = project.start("-r", "-u", env=env_b)  # takes "held" and waits for it
    project.wait_for(lambda: any(c["version"] == "held" for c in project.calls("train")), what="the second daemon")
    first.kill()  # mid-version
    first.communicate()
    cut_at = steps_done(project, "a-slow")
    (project.root / "go").touch()
    output, _ = second.communicate(timeout=90)
    assert second.returncode == 0, output
    assert "skipped by -u" not in output
    slow_runs = [c for c in project.calls("train") if c["version"] == "slow"]
    assert len(slow_runs) == 2 and slow_runs[1]["start"] >= cut_at - 1  # resumed, from its checkpoint
    finished_once(project, ["slow", "held"])
    assert "it resumes here" in project.log_text()


def test_two_daemons_without_history_never_run_a_claimed_version_twice(project):
    # The second daemon starts once the first has claimed its first version: a version claimed
    # by a live daemon is not claimed again, and the two share one session.
    eight_versions(project)
    first = project.start("-r")
    project.wait_for(lambda: any(e["event"] == "started" for e in project.journal()), what="a first claim")
    second = project.start("-r")
    ended_with_0(first, second, timeout=90)
    for event in ("claimed", "started", "finished"):
        counts = Counter(e["version"] for e in project.journal() if e["event"] == event)
        assert counts == {f"v{i}": 1 for i in range(8)}, (event, counts)


def test_a_version_run_once_by_a_live_daemon_is_not_rerun_by_one_that_joins_later(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2", wait_for="go", model_dir_suffix="v2")'))
    project.queue(["a.py"])
    first = project.start("-r")
    project.wait_for(lambda: any(c["version"] == "v2" for c in project.calls("train")), what="v1 done, v2 running")
    second = project.start("-r")  # v1 ran in this session already, v2 runs: it only stands by
    project.wait_for(lambda: "waiting while other daemons run a.py:v2" in project.log_text(), what="the second to wait")
    (project.root / "go").touch()
    ended_with_0(first, second, timeout=60)
    assert [c["version"] for c in project.calls("train")] == ["v1", "v2"]


def test_a_daemon_that_joins_a_session_runs_nothing_a_member_that_has_ended_ran(project):
    # Without -u: the first daemon ran b.py and ended; the second, of its session, still holds
    # a.py:held. A third, joining the second, re-ran b.py (a probe, 2 of 2): the session is
    # also the daemons that have left it, which the second says in its heartbeat.
    project.script("a.py", versions_code('versions.addV("held", wait_for="go")'))
    project.script("b.py", versions_code('versions.addV("v1", model_dir_suffix="v1")', 'versions.addV("v2", model_dir_suffix="v2")'))
    project.queue(["a.py", "b.py"])
    second = project.start("-r", "--only", "a.py")
    project.wait_for(lambda: project.calls("train"), what="the second daemon to hold a.py:held")
    first = project.run("-r", "--only", "b.py")  # joins the second's session, runs b.py, ends
    assert first.returncode == 0 and [c["script"] for c in project.calls("train")] == ["a.py", "b.py", "b.py"], first.output
    third = project.start("-r")
    project.wait_for(lambda: "waiting while other daemons run a.py:held" in project.log_text(), what="the third to wait")
    (project.root / "go").touch()
    ended_with_0(second, third, timeout=60)
    assert [c["script"] for c in project.calls("train")] == ["a.py", "b.py", "b.py"]  # nothing twice


def unshared(name):
    """Run under a pid namespace of its own (a container on this machine), as root only."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for pid namespaces")
    return ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "sh", "-c", f'hostname {name} && exec "$@"', "--"]


def test_daemons_with_one_host_name_in_two_pid_namespaces_leave_each_others_claims_alone(project):
    # Containers on one machine: the same host name, pids that start at 1 in each. Each daemon's
    # liveness is its heartbeat there, not a pid that means another process here.
    project.script("a.py", versions_code('versions.addV("held", wait_for="go")', 'versions.addV("free", model_dir_suffix="free")'))
    project.queue(["a.py"])
    first = project.start("-r", "-u", env=FAST_BEATS, prefix=unshared("box"))
    project.wait_for(lambda: project.calls("train"), what="the first container to start the held version")
    second = project.start("-r", "-u", env=FAST_BEATS, prefix=unshared("box"))
    project.wait_for(lambda: len(project.calls("train")) == 2, what="the second container to take the free version")
    time.sleep(2)  # ten beats: long enough to take over a claim wrongly
    (project.root / "go").touch()
    ended_with_0(first, second, timeout=60)
    journal = project.journal()
    assert not [e for e in journal if e["event"] == "interrupted"]
    assert {e["host"] for e in journal} == {"box"} and len({e["namespace"] for e in journal}) == 2
    finished_once(project, ["held", "free"])


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
def test_a_paused_daemon_loses_its_claim_stops_its_version_and_records_nothing(project, preload):
    if preload:  # the preload server keeps the workers: it watches the heartbeat
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\npreload = ["wave"]\n')
    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.02, epoc_count=10)'))
    project.queue(["a.py"])
    paused = project.start("-r", "-u", env=other_host("host-a"))
    project.wait_for(lambda: steps_done(project) >= 5, what="host-a to train")
    first_worker = project.calls("train")[0]["pid"]
    paused.send_signal(signal.SIGSTOP)  # a suspended laptop, a frozen VM
    try:
        # The taker beats every second: at 0.2 s, a loaded machine stalling it for 1.2 s once
        # had its own keeper cut its version off (recorded, then resumed: two rows of host-b).
        taker = project.start("-r", "-u", env={**other_host("host-b"), "MLPIPELINE_HEARTBEAT_S": "1"})
        project.wait_for(lambda: len(project.calls("train")) == 2, timeout=60, what="host-b to take the version over")
        # Its keeper ended it before the takeover: the two never train at once.
        assert not alive(first_worker)
        output, _ = taker.communicate(timeout=90)
        assert taker.returncode == 0, output
    finally:
        paused.send_signal(signal.SIGCONT)
    output, _ = paused.communicate(timeout=60)
    assert paused.returncode == 0, output
    finished_once(project, ["slow"])
    assert [r["host"] for r in project.results()] == ["host-b"], (project.results(), project.log_text())
    assert "a.py:slow lost its claim to host-b:" in project.log_text()


def test_a_daemon_killed_on_another_host_leaves_no_session_behind(project):
    # Its heartbeat file outlives a kill -9. A daemon that starts once that beat is stale (by the
    # folder's own clock) does not join the dead daemon's session: --retry-failed retries what
    # it failed, and the version it held is taken over and finished.
    project.script(
        "a.py",
        versions_code(
            'versions.addV("flaky", fail_until_attempt=2, model_dir_suffix="flaky")',
            'versions.addV("held", wait_for="go", model_dir_suffix="held")',
        ),
    )
    project.queue(["a.py"])
    host_a = project.start("-r", "-u", env=other_host("host-a"))
    project.wait_for(lambda: any(c["version"] == "held" for c in project.calls("train")), what="host-a to fail one, hold the other")
    host_a.kill()
    host_a.communicate()
    assert list((project.outputs / ".heartbeats").iterdir())  # left behind
    time.sleep(2)  # ten beats: host-a is gone, by any daemon's judgement
    (project.root / "go").touch()
    host_b = project.run("-r", "-u", "--retry-failed", env=other_host("host-b"))
    assert host_b.returncode == 0, host_b.output
    assert sorted(c["version"] for c in project.calls("train")) == ["flaky", "flaky", "held", "held"]  # both ran again
    finished_once(project, ["flaky", "held"])


def test_a_daemon_that_beat_fast_and_was_killed_is_not_joined_by_one_that_beats_slowly(project):
    # A beat file is judged by its writer's interval: a daemon that beat every 0.3 s and has
    # been silent for 3 s is gone, though the reader beats every 5 s (and would wait 30 s).
    gate = project.root / "go"
    project.script("a.py", versions_code('versions.addV("v", fail_in="train", model_dir_suffix="v")', f'versions.addV("w", wait_for={str(gate)!r}, model_dir_suffix="w")'))
    project.queue(["a.py"])
    fast = project.start("-r", env={"MLPIPELINE_HOSTNAME": "host-z", "MLPIPELINE_HEARTBEAT_S": "0.3"})
    project.wait_for(lambda: any(e["event"] == "failed" for e in project.journal()) and len(project.calls("train")) == 2, what="v to fail, w to start")
    fast.kill()
    fast.communicate()
    for call in project.calls("train"):
        kill_tree(call["pid"])
    time.sleep(3)
    gate.write_text("")
    result = project.run("-r", "-u", "--retry-failed", timeout=120)
    assert result.returncode == 1, result.output  # v fails again: it was run again, not left to the dead daemon
    claims = [e for e in project.journal() if e["event"] == "claimed" and e["version"] == "v"]
    assert len(claims) == 2 and claims[-1]["host"] != "host-z"
    assert [e["event"] for e in project.journal() if e["version"] == "w"][-1] == "finished"


def test_a_version_whose_model_dir_a_version_of_another_queue_holds_waits_for_it(project):
    # Two daemons of two --only selections: the second's version shares the first's model_dir.
    # It waits, saying why, then runs; it once ended "nothing to run" with the version unrun.
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2", wait_for="go")'))
    project.queue(["a.py"])
    first = project.start("-r", "--only", "a.py:v2")
    project.wait_for(lambda: project.calls("train"), what="the first daemon to hold the model_dir")
    second = project.start("-r", "--only", "a.py:v1")
    project.wait_for(lambda: "a.py:v1 waits for its model_dir, which a version of another daemon's queue uses" in project.log_text(), what="the second to wait")
    assert second.poll() is None
    (project.root / "go").touch()
    ended_with_0(first, second, timeout=60)
    assert [c["version"] for c in project.calls("train")] == ["v2", "v1"]


def test_a_cancel_of_a_version_whose_daemon_stops_beating_is_recorded_by_the_daemon_that_takes_it_over(project):
    # The command saw the version's daemon alive and left the cancel to it; that daemon froze.
    # The daemon that took the claim over recorded it interrupted, and -u finished it (a probe,
    # 2 of 2): a cancel must hold.
    project.script(
        "a.py", versions_code('versions.addV("slow", sleep_per_step=0.05, epoc_count=10, model_dir_suffix="s")', 'versions.addV("quick", model_dir_suffix="q")')
    )
    project.queue(["a.py"])
    frozen = project.start("-r", "-u", env=other_host("host-a"))
    project.wait_for(lambda: steps_done(project, "a-s") >= 3, what="host-a to train")
    frozen.send_signal(signal.SIGSTOP)
    try:
        cancel = project.run("cancel", "a.py:slow")
        assert cancel.returncode == 0 and "its daemon stops a.py:slow on host-a" in cancel.output, cancel.output
        taker = project.start("-r", "-u", env={**other_host("host-b"), "MLPIPELINE_HEARTBEAT_S": "1"})
        output, _ = taker.communicate(timeout=90)
        assert taker.returncode == 0, output
        assert "a.py:slow was cut off" in output and "a cancel asked while it ran names it, so it is recorded cancelled" in output, output
    finally:
        frozen.send_signal(signal.SIGCONT)
    frozen.communicate(timeout=60)
    [end] = [e for e in project.journal() if e["version"] == "slow" and e["event"] in ("cancelled", "finished")]
    assert end["event"] == "cancelled" and end["host"] == "host-b" and "while cut off" in end["reason"], end
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    assert [c["version"] for c in project.calls("train")].count("slow") == 1  # -u leaves it
    assert {r["version"]: r["status"] for r in project.results()}["slow"] == "cancelled"


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
def test_a_daemon_stopped_while_its_version_ran_on_records_the_versions_own_duration(project, preload):
    # SIGSTOP of the daemon alone: its version trained on and ended; the daemon, woken, recorded
    # its own clock's 19.5 s for a version of 5 s (a probe).
    if preload:
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\npreload = ["wave"]\n')
    project.script("a.py", versions_code('versions.addV("v", sleep_per_step=0.3, epoc_count=1)', defaults="learning_rate=0.1, dataloader=Data(), batch_size=25, epoc_count=1"))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train") or daemon.poll() is not None, what="the version to train")
    assert daemon.poll() is None, daemon.communicate()[0]
    daemon.send_signal(signal.SIGSTOP)
    try:
        project.wait_for(lambda: project.calls("trained"), timeout=30, what="the version to end while its daemon is stopped")
        time.sleep(4)
    finally:
        daemon.send_signal(signal.SIGCONT)
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    [row] = project.results()
    trained = project.calls("trained")[0]["t"] - project.calls("train")[0]["t"]
    assert trained <= row["duration_s"] < trained + 2.5, (row["duration_s"], trained)


def test_a_cancel_left_to_a_daemon_killed_before_it_acted_is_recorded_by_the_next_start(project):
    # Same host: the command saw the daemon alive (stopped) and left the cancel to it; it was
    # then killed outright. The next daemon takes the claim over as it starts (a reviewer
    # found it resumed and finished the version there).
    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.05, epoc_count=10, model_dir_suffix="s")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: steps_done(project, "a-s") >= 3, what="the version to train")
    daemon.send_signal(signal.SIGSTOP)
    cancel = project.run("cancel", "a.py:slow")
    assert cancel.returncode == 0 and "its daemon stops a.py:slow" in cancel.output, cancel.output
    kill_tree(daemon.pid)
    daemon.communicate()
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    assert "a cancel asked while it ran names it, so it is recorded cancelled" in again.output, again.output
    assert [e["event"] for e in project.journal() if e["version"] == "slow"][-2:] == ["interrupted", "cancelled"]
    assert len(project.calls("train")) == 1
