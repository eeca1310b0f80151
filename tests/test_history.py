"""SPEC 5, -u: finished work skipped, cut-off work resumed first, fingerprints by content."""
import hashlib
import os
import signal
import time

from conftest import kill_tree, versions_code

SLOW = 'versions.addV("slow", sleep_per_step=0.05, epoc_count=10)'  # 100 steps of 0.05 s


def test_use_history_skips_finished_versions(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    assert project.run("-r", "-u").returncode == 0
    assert len(project.calls("train")) == 2
    again = project.run("-r", "-u")
    assert again.returncode == 0
    assert len(project.calls("train")) == 2  # nothing ran twice
    # Without -u every listed version runs once more in this session, from a clean model_dir.
    assert project.run("-r").returncode == 0
    assert len(project.calls("train")) == 4
    assert len(project.calls("clean")) == 4


def test_touch_changes_nothing_but_an_edit_reruns_from_a_clean_model_dir(project):
    script = project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r", "-u").returncode == 0
    first_sha = project.journal()[-1]["sha256"]

    later = time.time() + 100
    os.utime(script, (later, later))
    assert project.run("-r", "-u").returncode == 0
    assert len(project.calls("train")) == 1

    script.write_text(script.read_text() + "\n# an edit\n")
    assert project.run("-r", "-u").returncode == 0
    trains = project.calls("train")
    assert len(trains) == 2
    assert trains[1]["start"] == 0 and trains[1]["steps"] == 20  # cleaned: trained from zero
    assert len(project.calls("clean")) == 2
    assert project.journal()[-1]["sha256"] != first_sha


def test_keep_on_script_change_does_not_rerun_edited_scripts(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\non_script_change = "keep"\n')
    script = project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r", "-u").returncode == 0
    script.write_text(script.read_text() + "\n# an edit\n")
    assert project.run("-r", "-u").returncode == 0
    assert len(project.calls("train")) == 1


def test_failed_versions_are_retried_only_when_asked(project):
    script = project.script("a.py", versions_code('versions.addV("flaky", fail_in="train")', 'versions.addV("ok")'))
    project.queue(["a.py"])
    assert project.run("-r", "-u").returncode == 1
    assert project.run("-r", "-u").returncode == 0  # the failure is not retried
    assert [c["version"] for c in project.calls("train")] == ["flaky", "ok"]
    assert project.run("-r", "-u", "--retry-failed").returncode == 1
    assert [c["version"] for c in project.calls("train")] == ["flaky", "ok", "flaky"]
    # An edit is new code: every version of the script runs again, no --retry-failed needed.
    script.write_text(script.read_text().replace('fail_in="train"', 'fail_in="never"'))
    assert project.run("-r", "-u").returncode == 0
    assert [c["version"] for c in project.calls("train")] == ["flaky", "ok", "flaky", "flaky", "ok"]


def test_power_cut_then_use_history_resumes_the_cut_off_version_first(project):
    project.script("a.py", versions_code('versions.addV("quick")', SLOW, 'versions.addV("later")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    checkpoint = project.outputs / "model_ckpts" / "a" / "steps.txt"
    project.wait_for(
        lambda: any(c["version"] == "slow" for c in project.calls("train"))
        and checkpoint.exists()
        and int(checkpoint.read_text() or 0) >= 5,
        what="the slow version to train a few steps",
    )
    kill_tree(daemon.pid)  # the daemon and its children, all at once
    daemon.communicate()
    cut_at = int(checkpoint.read_text())
    assert 5 <= cut_at < 100

    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    trains = project.calls("train")
    assert [c["version"] for c in trains] == ["quick", "slow", "slow", "later"]
    resumed = trains[2]
    assert resumed["start"] == cut_at and resumed["steps"] == 100 - cut_at  # the remaining steps
    # quick, slow's fresh start and later cleaned it; the resumed run kept its model_dir.
    assert len(project.calls("clean")) == 3
    events = [(e["event"], e["version"]) for e in project.journal()]
    assert events == [
        ("claimed", "quick"),
        ("started", "quick"),
        ("finished", "quick"),
        ("claimed", "slow"),
        ("started", "slow"),
        ("interrupted", "slow"),
        ("claimed", "slow"),
        ("started", "slow"),
        ("finished", "slow"),
        ("claimed", "later"),
        ("started", "later"),
        ("finished", "later"),
    ]
    assert project.journal()[7]["resumed"] is True
    statuses = [(r["version"], r["status"]) for r in project.results()]
    assert statuses == [("quick", "finished"), ("slow", "finished"), ("later", "finished")]
    assert project.results()[1]["steps"]["already_trained"] == cut_at
    assert "a.py:slow was cut off" in project.log_text()


def test_ctrl_c_interrupts_records_and_exits_130(project):
    project.script("a.py", versions_code(SLOW, 'versions.addV("never")'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="training to start")
    child_pid = project.calls("train")[0]["pid"]
    daemon.send_signal(signal.SIGINT)
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 130, output
    assert [e["event"] for e in project.journal()] == ["claimed", "started", "interrupted"]
    assert project.results()[0]["status"] == "interrupted"
    assert "resumable with -u" in project.results()[0]["reason"]
    assert [c["version"] for c in project.calls("train")] == ["slow"]
    try:
        os.kill(child_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the version outlived its daemon"


def test_sigterm_exits_143(project):
    project.script("a.py", versions_code(SLOW))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="training to start")
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 143
    assert project.journal()[-1]["event"] == "interrupted"


def test_a_script_edited_while_its_version_runs_finishes_on_the_code_it_started_with(project):
    script = project.script("a.py", versions_code('versions.addV("v1", wait_for="go")'))
    project.queue(["a.py"])
    original = hashlib.sha256(script.read_bytes()).hexdigest()
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: project.calls("train"), what="v1 to start")
    script.write_text(script.read_text().replace('record(hook="eval"', 'record(edited=True, hook="eval"'))
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    first_run_evals = [c for c in project.calls("eval")][:2]
    assert not any(c.get("edited") for c in first_run_evals)  # the running child kept its code
    finished = [e for e in project.journal() if e["event"] == "finished"]
    assert finished[0]["sha256"] == original == project.results()[0]["sha256"]
    # The edit is new code: at its next dispatch the daemon ran the version again, from a clean
    # model_dir, on the new code, and recorded the new fingerprint.
    assert len(finished) == 2 and finished[1]["sha256"] != original
    assert [c.get("edited", False) for c in project.calls("eval")] == [False, False, True, True]
    assert [c["start"] for c in project.calls("train")] == [0, 0]
    assert project.run("-r", "-u").returncode == 0  # and nothing is left for -u to run
    assert len(project.calls("train")) == 2
