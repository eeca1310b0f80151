"""SPEC 5 and 6: versions that die in every way a real one does, and what they leave behind."""
import os
import signal
import time

import pytest
from conftest import alive, kill_tree, versions_code


def test_segfault_exit_and_outside_sigkill_are_failures_with_their_cause(project):
    project.script(
        "a.py",
        versions_code(
            'versions.addV("segfault", crash="segfault")',
            'versions.addV("exits", exit_in="train", exit_code=3)',
            'versions.addV("oom", wait_for="never-created")',
            'versions.addV("survivor")',
        ),
    )
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: any(c["version"] == "oom" for c in project.calls("train")), what="the oom version")
    oom_pid = [c for c in project.calls("train") if c["version"] == "oom"][0]["pid"]
    os.kill(oom_pid, signal.SIGKILL)  # what the out-of-memory killer does: the child alone
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 1, output
    results = {r["version"]: r for r in project.results()}
    assert results["segfault"]["status"] == "failed" and results["segfault"]["signal"] == "SIGSEGV"
    assert "was killed by SIGSEGV" in results["segfault"]["reason"]
    assert results["exits"]["exit_code"] == 3 and "exited with status 3" in results["exits"]["reason"]
    assert results["oom"]["signal"] == "SIGKILL" and "out-of-memory killer" in results["oom"]["reason"]
    assert results["survivor"]["status"] == "finished"
    log, out = project.log_text(), project.output_text()
    assert "a.py:segfault: its process was killed by SIGSEGV" in log
    assert "process ended:  signal SIGSEGV" in out
    assert "process ended:  exit status 3" in out
    assert "process ended:  signal SIGKILL" in out


def test_nothing_a_version_started_outlives_it(project):
    project.script("a.py", versions_code('versions.addV("v1", grandchildren=[False, True])'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    pids = [c["pid"] for c in project.calls("grandchild")]
    assert len(pids) == 2
    assert not any(alive(pid) for pid in pids), "a process of a finished version is still running"


@pytest.mark.slow
def test_second_ctrl_c_kills_at_once_and_no_grandchild_survives(project):
    project.script("a.py", versions_code('versions.addV("stubborn", ignore_signals=True, wait_for="never", grandchildren=[False, True])'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: len(project.calls("grandchild")) == 2, what="the grandchildren")
    child = project.calls("train")[0]["pid"]
    daemon.send_signal(signal.SIGINT)
    project.wait_for(lambda: "SIGINT received" in project.log_text(), what="the first Ctrl-C to be seen")
    assert alive(child)  # it ignores SIGINT: the grace period runs
    daemon.send_signal(signal.SIGINT)
    daemon.communicate(timeout=5)  # well inside the 10 s grace: the second Ctrl-C killed at once
    assert daemon.returncode == 130
    assert project.results()[0]["status"] == "interrupted"
    for pid in [child] + [c["pid"] for c in project.calls("grandchild")]:
        assert not alive(pid)


@pytest.mark.slow
def test_a_version_that_ignores_sigterm_is_killed_after_the_grace_period(project):
    project.script("a.py", versions_code('versions.addV("stubborn", ignore_signals=True, wait_for="never")'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="training")
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 143
    record = project.results()[0]
    assert record["status"] == "interrupted" and record["signal"] == "SIGKILL"
    assert 9 < record["duration_s"] < 25
    assert not alive(project.calls("train")[0]["pid"])


def test_peak_memory_and_cpu_time_cover_the_whole_tree(project):
    project.script("a.py", versions_code('versions.addV("v1", hold_mb=300, burn_cpu_s=1.0)'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    record = project.results()[0]
    assert record["peak_memory_mb"] >= 300  # held by a grandchild, not the version's own process
    assert record["cpu_s"] >= 1.0
    assert "peak memory:" in project.output_text()


def test_a_power_cut_leaves_every_earlier_record_exactly_once(project):
    project.script("a.py", versions_code('versions.addV("one")', 'versions.addV("two")', 'versions.addV("cut", wait_for="never")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: any(c["version"] == "cut" for c in project.calls("train")), what="the third version")
    kill_tree(daemon.pid)
    daemon.communicate()
    (project.root / "never").touch()
    assert project.run("-r", "-u").returncode == 0
    assert [(r["version"], r["status"]) for r in project.results()] == [("one", "finished"), ("two", "finished"), ("cut", "finished")]
    output = project.output_text()
    for version in ("one", "two", "cut"):
        assert output.count(f"a.py:{version}    FINISHED") == 1
        assert project.log_text().count(f"a.py:{version} finished in") == 1
        assert sum(e["version"] == version and e["event"] == "finished" for e in project.journal()) == 1


def test_ctrl_c_while_a_script_is_listed_records_nothing_and_says_it_was_stopped(project):
    project.script("slow.py", "import time\ntime.sleep(30)\n" + versions_code('versions.addV("v")'))
    project.queue(["slow.py"])
    daemon = project.start("-r", start_new_session=True)
    project.wait_for(lambda: "execution mode started" in project.log_text(), what="the daemon's start")
    time.sleep(1)  # the listing child imports the script now
    os.killpg(daemon.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to the whole foreground group
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 130, output
    assert "stopped by SIGINT; records in" in output and "nothing to run" not in output and "failed" not in output
    assert project.results() == []  # the script is not recorded failed: it was only stopped
    assert "execution mode ended: stopped by SIGINT" in project.log_text()
