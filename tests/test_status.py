"""SPEC 8: `mlpipeline status` shows every queued version's state, while a daemon runs too."""
from __future__ import annotations

import json
import os
import signal
import time

from conftest import Project, alive, kill_tree, versions_code

FAST = "learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=1"


def status(project: Project) -> dict:
    result = project.run("status", "--json")
    assert result.returncode == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    for row in rows:
        assert {"script", "version", "state"} <= row.keys()
    return {f"{row['script']}:{row['version']}": row for row in rows}


def test_status_shows_every_state(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nversion_timeout = 2\n')
    project.script(
        "one.py",
        versions_code(
            'versions.addV("done")',
            'versions.addV("failed", fail_in="train")',
            'versions.addV("timed", sleep_per_step=1)',
            'versions.addV("later")',
            defaults=FAST,
        ),
    )
    project.script("cut.py", versions_code('versions.addV("v", sleep_per_step=0.2)', defaults=FAST))
    project.script("edited.py", versions_code('versions.addV("v")', defaults=FAST))
    project.script("live.py", versions_code('versions.addV("v", sleep_per_step=0.1)', defaults="learning_rate=0.1, dataloader=Data(), batch_size=1, epoc_count=6"))
    (project.models / "broken.py").write_text("def broken(:\n")
    project.queue(["one.py", "cut.py", "edited.py", "live.py", "broken.py"])

    before = status(project)
    assert {label: row["state"] for label, row in before.items()} == {
        "one.py:done": "pending",
        "one.py:failed": "pending",
        "one.py:timed": "pending",
        "one.py:later": "pending",
        "cut.py:v": "pending",
        "edited.py:v": "pending",
        "live.py:v": "pending",
        "broken.py:None": "broken",
    }
    assert "broken.py:1: syntax error" in before["broken.py:None"]["reason"]
    assert not project.outputs.exists()  # status writes nothing

    only = ["--only", "one.py:done", "--only", "one.py:failed", "--only", "one.py:timed", "--only", "edited.py"]
    assert project.run("-r", *only).returncode == 1

    # A daemon killed outright leaves its claim open: status sees the daemon is gone.
    daemon = project.start("-r", "--only", "cut.py")
    project.wait_for(lambda: any(c["script"] == "cut.py" for c in project.calls("train")), what="cut.py to train")
    kill_tree(daemon.pid)
    daemon.communicate()
    cut = status(project)["cut.py:v"]
    assert cut["state"] == "interrupted" and "is gone; -u resumes it first" in cut["reason"]

    script = project.models / "edited.py"
    script.write_text(script.read_text() + "\n# edited\n")

    # A daemon in the background, reporting progress (with no version_timeout to race the looks at it).
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\n')
    daemon = project.start("-r", "--only", "live.py")
    try:
        project.wait_for(
            lambda: status(project)["live.py:v"].get("progress"), timeout=60, what="live.py's progress in status"
        )
        rows = status(project)
        live = rows["live.py:v"]
        assert live["state"] == "running"
        assert live["pid"] == daemon.pid and live["child_pid"] and live["host"]
        assert live["since"] and live["duration_s"] >= 0
        assert live["progress"]["step"] >= 1 and live["progress"]["total"] == 600
        assert "loss" in live["metrics"]
        plain = project.run("status")
        assert plain.returncode == 0
        assert "\x1b" not in plain.output
        lines = {line.split()[0]: line for line in plain.stdout.splitlines() if line.strip()}
        assert lines["live.py:v"].split()[1] == "running"
        assert f"pid {daemon.pid}" in lines["live.py:v"]
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=60)

    rows = status(project)
    states = {label: row["state"] for label, row in rows.items()}
    assert states == {
        "one.py:done": "finished",
        "one.py:failed": "failed",
        "one.py:timed": "timed_out",
        "one.py:later": "pending",
        "cut.py:v": "interrupted",
        "edited.py:v": "stale",
        "live.py:v": "interrupted",
        "broken.py:None": "broken",
    }
    assert rows["one.py:done"]["metrics"]["loss"] == 0.1  # the last report() of the run
    assert rows["one.py:done"]["eval_test"] == {"accuracy": 0.5, "steps": 50}
    assert rows["one.py:done"]["duration_s"] > 0
    assert "deliberate failure in train" in rows["one.py:failed"]["reason"]
    assert "version_timeout" in rows["one.py:timed"]["reason"]
    assert "ended without recording an end" in rows["cut.py:v"]["reason"]  # the next daemon said so
    assert "SIGINT" in rows["live.py:v"]["reason"]
    assert rows["edited.py:v"]["previous_state"] == "finished"

    plain = project.run("status").stdout
    assert "1 finished, 1 failed, 1 timed out, 1 pending, 2 interrupted, 1 stale, 1 broken" in plain


def test_status_over_a_half_written_journal_line_waits_for_it(project):
    # A daemon appending right now: the line without its newline is not a tear to status.
    project.script("a.py", versions_code('versions.addV("v")', defaults=FAST))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    with open(project.outputs / "history.jsonl", "a") as handle:
        handle.write('{"time": "2026-01-01T00:00:00+00:00", "event": "claimed", "scr')
    result = project.run("status", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)[0]["state"] == "finished"
    assert "cut off" not in result.stderr


def test_status_needs_a_valid_queue(project):
    project.write("models.config", "[WHITELISTED_MODELS]\nscripts = [\n")
    result = project.run("status")
    assert result.returncode == 2
    assert "models.config" in result.output and "not valid TOML" in result.output
    assert project.run("status", "-r").returncode == 2  # not for status
    assert "--json: for 'mlpipeline status' and 'mlpipeline compare' only" in project.run("--json").output


def test_ctrl_c_while_status_lists_a_script_leaves_nothing_running(project):
    # A script no daemon has listed: status imports it in a child, and this one takes its time.
    (project.models / "slow.py").write_text(
        "import os, time\nopen('importing', 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    )
    project.queue(["slow.py"])
    looking = project.start("status")
    marker = project.root / "importing"
    project.wait_for(lambda: marker.exists() and marker.read_text(), what="the listing child")
    child = int(marker.read_text())
    looking.send_signal(signal.SIGINT)
    output, _ = looking.communicate(timeout=30)
    assert looking.returncode == 130
    assert "Traceback" not in output
    project.wait_for(lambda: not alive(child), timeout=10, what="the listing child to be gone")


def test_another_hosts_claim_runs_while_its_heartbeat_is_fresh(project):
    from mlpipeline.records.heartbeat import beat_path
    from mlpipeline.records.journal import Journal
    from mlpipeline.records.states import JournalEvent

    project.script("a.py", versions_code('versions.addV("v")', defaults=FAST))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    sha256 = project.journal()[-1]["sha256"]
    daemon = "elsewhere:77:1795312570.31"
    journal = Journal(project.outputs / "history.jsonl", warn=lambda message: None)
    journal.append(
        JournalEvent.CLAIMED, host="elsewhere", pid=77, daemon=daemon, script="a.py", sha256=sha256, version="v", run_id="r1"
    )
    beat = beat_path(project.outputs / ".heartbeats", daemon)
    beat.parent.mkdir(exist_ok=True)
    beat.write_text('{"beat": 1}')

    row = status(project)["a.py:v"]
    assert (row["state"], row["host"], row["pid"]) == ("running", "elsewhere", 77)

    stale = time.time() - 600  # ten minutes without a beat: far past 6 beats and any clock slack
    os.utime(beat, (stale, stale))
    row = status(project)["a.py:v"]
    assert row["state"] == "interrupted" and "its daemon on elsewhere (pid 77) is gone" in row["reason"]


MANY_LINES = """
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Fails(Model):
    def train_model(self, data, steps):
        raise RuntimeError("Error(s) in loading state_dict:\\n\\tMissing key(s): fc.weight\\n\\tUnexpected key(s): head.weight")

    def evaluate_model(self, data, steps):
        return {}


MODEL = Fails(Versions(0.1, SplitDataLoader([0, 1], [0]), 1, 1))
MODEL.versions.addV("v")
"""


def test_a_reason_of_several_lines_is_marked_in_the_table_and_whole_in_json(project):
    project.script("f.py", MANY_LINES, prelude=False)
    project.queue(["f.py"])
    assert project.run("-r").returncode == 1
    table = project.run("status", env={"COLUMNS": "400"}).output
    assert "Error(s) in loading state_dict: [2 more lines: status --json]" in table, table
    assert "Unexpected key(s): head.weight" in status(project)["f.py:v"]["reason"]
