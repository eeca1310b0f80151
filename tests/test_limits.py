"""SPEC 3 and 6: version_timeout kills the tree and is recorded; retries make extra attempts."""
from conftest import alive, versions_code


def limits(project, **keys):
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\n{extra}')


def test_a_version_past_its_timeout_is_killed_and_recorded(project):
    limits(project, version_timeout=1.5)
    project.script("a.py", versions_code('versions.addV("hangs", wait_for="never", grandchildren=[False, True])', 'versions.addV("next")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1, result.output
    record = {r["version"]: r for r in project.results()}
    assert record["hangs"]["status"] == "timed_out"
    assert "ran past version_timeout (1.5 s); its process tree was killed" in record["hangs"]["reason"]
    assert 1.5 <= record["hangs"]["duration_s"] < 10
    assert record["next"]["status"] == "finished"  # the queue went on
    events = [e["event"] for e in project.journal()]
    assert events == ["claimed", "started", "timed_out", "claimed", "started", "finished"]
    for pid in [project.calls("train")[0]["pid"]] + [c["pid"] for c in project.calls("grandchild")]:
        assert not alive(pid)
    assert "a.py:hangs    TIMED_OUT" in project.output_text() and "■ a.py:hangs timed out in " in result.output
    # Like a failure, a timed-out version is not run again by -u without --retry-failed.
    assert project.run("-r", "-u").returncode == 0
    assert len(project.calls("train")) == 2


def test_timeout_in_test_mode_fails_the_run(project):
    limits(project, version_timeout=1)
    project.script("a.py", versions_code('versions.addV("hangs", wait_for="never")'))
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py:hangs ran past version_timeout (1 s)" in result.output


def test_retries_make_extra_attempts_each_recorded(project):
    limits(project, retries=2)
    project.script("a.py", versions_code('versions.addV("flaky", fail_until_attempt=3)', 'versions.addV("after")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output  # it finished in the end
    events = [(e["event"], e["version"], e.get("attempt")) for e in project.journal()]
    assert events == [
        ("claimed", "flaky", 1),
        ("started", "flaky", 1),
        ("failed", "flaky", 1),
        ("claimed", "flaky", 2),
        ("started", "flaky", 2),
        ("failed", "flaky", 2),
        ("claimed", "flaky", 3),
        ("started", "flaky", 3),
        ("finished", "flaky", 3),
        ("claimed", "after", 1),
        ("started", "after", 1),
        ("finished", "after", 1),
    ]
    assert [(r["attempt"], r["status"]) for r in project.results() if r["version"] == "flaky"] == [
        (1, "failed"),
        (2, "failed"),
        (3, "finished"),
    ]
    assert project.journal()[4]["resumed"] is True  # a retry continues in its model_dir
    assert "attempt 1 of 3 failed; retrying" in project.log_text()
    # The counts are of versions, by their last word: two versions, both finished.
    assert "execution mode ended: 2 finished" in project.log_text()
    assert "2 finished; records in" in result.output


def test_exhausted_retries_fail_the_run(project):
    limits(project, retries=1)
    project.script("a.py", versions_code('versions.addV("broken", fail_in="pre")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 1
    assert [(e["event"], e["attempt"]) for e in project.journal()] == [
        ("claimed", 1),
        ("started", 1),
        ("failed", 1),
        ("claimed", 2),
        ("started", 2),
        ("failed", 2),
    ]


def test_limits_are_checked_at_start(project):
    project.queue([])
    for text, message in [
        ("version_timeout = -1", "mlp.config:3: version_timeout must be 0 (none) or a finite number of seconds"),
        ('version_timeout = "1h"', "mlp.config:3: 'version_timeout' must be a number of seconds"),
        ("retries = 1.5", "mlp.config:3: 'retries' must be a whole number"),
        ("retries = -2", "mlp.config:3: retries must be 0 or more"),
    ]:
        project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\n{text}\n')
        result = project.run("-r")
        assert result.returncode == 2
        assert message in result.output


def test_the_exit_code_follows_each_versions_last_word_as_the_end_line_does():
    from mlpipeline.execution.tally import Tally

    tally = Tally()
    tally.add("a.py:v", "failed", 1.0)
    tally.add("a.py:w", "finished", 1.0)
    assert tally.ends_failed() and tally.counts() == {"failed": 1, "finished": 1}
    tally.add("a.py:v", "finished", 1.0)  # run again after an edit, or on a retry
    assert not tally.ends_failed() and tally.counts() == {"finished": 2}
    tally.add("b.py", "failed", 0.0)  # a broken script
    assert tally.ends_failed()
    tally.add("b.py:x", "finished", 1.0)  # fixed under --wait: its versions run
    tally.add("a.py:w", "failed", 1.0)
    tally.add("a.py:w", "paused", 1.0)  # its retry paused at a rung: not failed, not yet ended
    assert not tally.ends_failed() and tally.counts() == {"finished": 2}
