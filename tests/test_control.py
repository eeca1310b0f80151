"""`mlpipeline cancel`, `pause` and `resume` against real daemons, from this host and from
another host name on the same folder."""
from conftest import alive, versions_code
from test_daemon_death import SLOW, checkpoint, gone_within, kill_daemon_mid_version

SLOW_A = SLOW.replace('"slow"', '"a"')  # 200 steps of 0.05 s, in model_ckpts/a
QUICK_B = 'versions.addV("b", model_dir_suffix="b")'  # 20 steps


def events(project, version):
    return [e["event"] for e in project.journal() if e["version"] == version]


def test_cancel_stops_a_running_version_records_it_and_u_leaves_it(project):
    project.script("a.py", versions_code(SLOW_A, QUICK_B))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: checkpoint(project) >= 5, what="a to train")
    version = project.calls("train")[0]["pid"]
    other_host = {"MLPIPELINE_HOSTNAME": "laptop"}  # the command need not run where the daemon does
    result = project.run("cancel", "a.py:a", env=other_host)
    assert result.returncode == 0, result.output
    assert "its daemon stops a.py:a on" in result.output
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output  # a cancel is no failure
    assert gone_within([version], 1)
    assert "cancel a.py:a (asked on laptop): stopping a.py:a" in output
    assert events(project, "a")[-1] == "cancelled" and events(project, "b")[-1] == "finished"
    rows = {row["version"]: row for row in project.results()}
    assert rows["a"]["status"] == "cancelled" and "cancelled by `mlpipeline cancel a.py:a` on laptop" in rows["a"]["reason"]
    assert checkpoint(project) < 200

    status = project.run("status")
    assert "a.py:a" in status.stdout and "cancelled" in status.stdout
    again = project.run("-r", "-u")
    assert again.returncode == 0 and [c["version"] for c in project.calls("train")] == ["a", "b"]  # neither again
    retried = project.run("-r", "-u", "--retry-failed")
    assert retried.returncode == 0 and [c["version"] for c in project.calls("train")][-1] == "a"
    assert events(project, "a")[-1] == "finished"


def test_cancel_keeps_queued_versions_from_starting_in_the_session(project):
    project.script("a.py", versions_code(SLOW_A.replace("epoc_count=20", "epoc_count=3")))  # 30 steps
    project.script("b.py", versions_code(QUICK_B))
    project.queue(["a.py", "b.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: checkpoint(project) >= 2, what="a to train")
    assert project.run("cancel", "b.py").returncode == 0
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert [c["script"] for c in project.calls("train")] == ["a.py"]
    assert events(project, "b") == []  # never claimed: it was only skipped by that session
    assert project.run("-r", "-u").returncode == 0
    assert [c["script"] for c in project.calls("train")] == ["a.py", "b.py"]  # a later session runs it


def test_cancel_of_a_version_whose_daemon_died_keeps_u_from_resuming_it(project):
    project.script("a.py", versions_code(SLOW_A))
    project.queue(["a.py"])
    kill_daemon_mid_version(project, steps=5)
    result = project.run("cancel", "a.py")
    assert result.returncode == 0 and "a.py:a (cut off earlier) recorded as cancelled" in result.output
    assert project.results()[-1]["status"] == "cancelled" and "a.py:a    CANCELLED" in project.output_text()
    assert project.run("-r", "-u").returncode == 0
    assert len(project.calls("train")) == 1 and events(project, "a")[-1] == "cancelled"


def test_pause_lets_running_versions_finish_and_resume_starts_the_rest(project):
    project.script("a.py", versions_code(SLOW_A.replace("epoc_count=20", "epoc_count=4"), QUICK_B))  # 40 steps, then b
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: checkpoint(project) >= 2, what="a to train")
    assert project.run("pause", env={"MLPIPELINE_HOSTNAME": "laptop"}).returncode == 0
    project.wait_for(lambda: events(project, "a")[-1:] == ["finished"], timeout=60, what="a to finish")
    status = project.run("status")
    assert "the queue is paused (`mlpipeline pause` on laptop" in status.output
    project.wait_for(lambda: "paused by `mlpipeline pause` on laptop" in project.log_text(), what="the daemon to say so")
    assert daemon.poll() is None and events(project, "b") == []  # waits, starts nothing
    assert project.run("resume").returncode == 0
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert events(project, "b")[-1] == "finished"
    assert "the queue is paused" not in project.run("status").output


def test_a_daemon_started_while_paused_waits_for_resume(project):
    project.script("a.py", versions_code(QUICK_B))
    project.queue(["a.py"])
    assert "not paused: " in project.run("resume").output  # nothing to resume yet
    assert project.run("pause").returncode == 0
    assert "paused (it was paused already, by `mlpipeline pause` on" in project.run("pause").output
    daemon = project.start("-r")
    project.wait_for(lambda: "paused by" in project.log_text(), what="the daemon to see the pause")
    assert alive(daemon.pid) and project.calls("train") == []
    assert "resumed: the daemons on this folder start versions again" in project.run("resume").output
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert [c["version"] for c in project.calls("train")] == ["b"]


def test_a_daemon_started_while_paused_with_nothing_left_to_run_ends(project):
    project.script("a.py", versions_code(QUICK_B))
    project.queue(["a.py"])
    assert project.run("-r", "-u").returncode == 0
    assert project.run("pause").returncode == 0
    result = project.run("-r", "-u", timeout=60)  # waited for a resume for ever before
    assert result.returncode == 0 and "1 skipped by -u" in result.output, result.output


def test_the_control_file_survives_hand_edits_and_cut_lines(project):
    project.script("a.py", versions_code(QUICK_B))
    project.queue(["a.py"])
    project.outputs.mkdir(parents=True)
    control = project.outputs / "control.jsonl"
    # A line a crash cut short, and lines that are not requests: none of them swallows a pause.
    control.write_text('{"action": "cancel", "script": "a.py", "version": ["b"]}\n{"time": "x", "act')
    assert project.run("pause").returncode == 0
    assert "the queue is paused" in project.run("status").output
    daemon = project.start("-r")
    project.wait_for(lambda: "paused by" in project.log_text(), what="the daemon to see the pause")
    control.unlink()  # deleted under the daemon: a new file is read from its start
    assert project.run("resume").returncode == 0
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert [c["version"] for c in project.calls("train")] == ["b"]
    before = control.read_bytes()
    nothing = project.run("cancel", "nope.py")
    assert nothing.returncode == 2, nothing.output
    assert "cancel nope.py: models.config does not queue nope.py and the journal never saw it" in nothing.output
    assert control.read_bytes() == before  # nothing was asked


def test_a_cancel_says_what_it_matched_and_writes_nothing_for_what_matches_nothing(project):
    project.script("a.py", versions_code('versions.addV("a")', QUICK_B))
    project.queue(["a.py"])
    control = project.outputs / "control.jsonl"
    refused = [
        (["a.py:nosuch"], "cancel a.py:nosuch: a.py has no version nosuch (its versions: a, b)"),
        (["nope.py"], "cancel nope.py: models.config does not queue nope.py and the journal never saw it"),
        (["a.py:a", "a.py:typo"], "cancel a.py:typo: a.py has no version typo"),  # one typo: none of them is asked
        (["x" * 5000], "cancel: entry 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (5000 characters) names a file of more than 255 bytes"),
        (["a.py:" + "v" * 70000], "is too long for a request line"),
        (["a.py:b\n2026-01-01T00:00:00.000+00:00 INFO x"], "cancel 'a.py:b\\n2026-01-01T00:00:00.000+00:00 INFO x': the name holds a control character (U+000A"),
        (["a.py:\x1b[2Jb"], "holds a control character (U+001B at character 6)"),
    ]
    for names, message in refused:
        result = project.run("cancel", *names)
        assert result.returncode == 2, result.output
        assert message in result.output and "nothing was asked" in result.output, result.output
        assert "Traceback" not in result.output and len(result.output) < 2000, result.output
        assert not control.exists() and not project.outputs.exists(), names  # not even the folder

    queued = project.run("cancel", "a.py:b")
    assert queued.returncode == 0, queued.output
    assert "cancel a.py:b: queued: a.py:b; the daemons running now do not start it again" in queued.output
    assert [line.count('"version": "b"') for line in control.read_text().splitlines()] == [1]
    whole = project.run("cancel", "a.py")
    assert whole.returncode == 0 and "cancel a.py: queued: a.py:a, a.py:b;" in whole.output, whole.output

    # What the journal knows matches too, though models.config no longer queues it.
    assert project.run("-r").returncode == 0
    project.queue([])
    done = project.run("cancel", "a.py:a")
    assert done.returncode == 0, done.output
    assert "cancel a.py:a: neither running nor queued now" in done.output
    assert project.run("cancel", "a.py:c").returncode == 2
    assert len(control.read_text().splitlines()) == 3


def test_a_grown_control_file_is_compacted_and_no_request_is_applied_twice(project):
    import json
    from datetime import datetime, timedelta, timezone

    gate = project.root / "go"
    project.script(
        "a.py",
        versions_code(
            f'versions.addV("v", wait_for={str(gate)!r}, model_dir_suffix="v")',
            'versions.addV("z", model_dir_suffix="z")',
            'versions.addV("w", model_dir_suffix="w")',
        ),
    )
    project.queue(["a.py"])
    project.outputs.mkdir(parents=True)
    old = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lines = [json.dumps({"time": (old + timedelta(seconds=i)).isoformat(), "action": "cancel", "host": "h", "pid": 1, "script": "a.py", "version": None}) for i in range(10_000)]
    lines.append(json.dumps({"time": old.isoformat(), "action": "pause", "host": "h", "pid": 1}))
    lines.append(json.dumps({"time": old.isoformat(), "action": "resume", "host": "h", "pid": 1}))
    recent = datetime.now(timezone.utc) - timedelta(seconds=30)
    lines.append(json.dumps({"time": recent.isoformat(), "action": "cancel", "host": "h", "pid": 1, "script": "a.py", "version": "z"}))
    control = project.outputs / "control.jsonl"
    control.write_text("\n".join(lines) + "\n")
    assert control.stat().st_size > 1 << 20
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="v to start")
    assert project.run("cancel", "a.py:w").returncode == 0  # appended to a compacted file
    kept = control.read_text().splitlines()
    assert len(kept) == 2 and '"version": "z"' in kept[0] and '"version":"w"' in kept[1].replace(" ", "")
    aside = list(project.outputs.glob("control-*.jsonl"))  # the file as it was, whole
    assert len(aside) == 1 and aside[0].read_text().splitlines() == lines
    project.wait_for(lambda: "cancel a.py:w" in project.log_text(), what="the cancel to be read")
    gate.write_text("")
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    # The old cancels of a.py and the recent one of z were read when the daemon started (as
    # another session's) and are not applied when the rewritten file is read again.
    assert [c["version"] for c in project.calls("train")] == ["v", "z"]
    assert output.count("cancel a.py") == 1
