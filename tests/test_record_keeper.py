"""SPEC 7: a version's end reaches every file exactly once, even when a daemon dies mid-write."""
import hashlib
import json
import os
from dataclasses import asdict

import psutil
import pytest
from conftest import versions_code

from mlpipeline.records.ends import VersionEnd
from mlpipeline.records.files import write_json_atomic
from mlpipeline.records.journal import Journal
from mlpipeline.records.logs import OutputFile, ResultsFile
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.states import JournalEvent

HOST = {"MLPIPELINE_HOSTNAME": "testhost"}
DEAD = "testhost:999999:1.00"  # a daemon of this host whose pid does not run


def half_written_end(project, committed, published):
    """What a daemon killed inside RecordKeeper.commit leaves: a pending file, maybe more."""
    paths = OutputPaths(project.outputs, "testhost")
    paths.outputs_dir.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256((project.models / "a.py").read_bytes()).hexdigest()
    journal = Journal(paths.journal, lambda message: None)
    fields = {"host": "testhost", "pid": 999999, "daemon": DEAD, "script": "a.py", "sha256": sha, "version": "v1"}
    journal.append(JournalEvent.CLAIMED, **fields, run_id="abc123abc123")
    journal.append(JournalEvent.STARTED, **fields, run_id="abc123abc123")
    record = {
        "time": "2026-11-22T01:00:00.000+00:00", "host": "testhost", "script": "a.py", "version": "v1",
        "status": "finished", "run_id": "abc123abc123", "attempt": 1, "duration_s": 1.0, "sha256": sha,
    }
    end = VersionEnd(
        run_id="abc123abc123", host="testhost", daemon=DEAD, event="finished",
        journal_fields=dict(fields, attempt=1, duration_s=1.0, reason=None), record=record,
        log_lines=[("INFO", "a.py:v1", "finished in 1.00 s (run abc123abc123)")],
    )
    paths.pending.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.pending / "dead--abc123abc123.json", asdict(end))
    if committed:
        journal.append(JournalEvent.FINISHED, **end.journal_fields, run_id=end.run_id)
    if "results" in published:
        ResultsFile(paths.results).write(record)
    if "output" in published:
        OutputFile(paths.output).write(record)
    return paths


@pytest.mark.parametrize("published", [(), ("results",), ("results", "output")])
def test_a_committed_end_is_completed_exactly_once(project, published):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    paths = half_written_end(project, committed=True, published=published)
    for _ in range(2):
        result = project.run("-r", "-u", env=HOST)
        assert result.returncode == 0, result.output
    assert project.calls("train") == []  # it had finished: nothing runs again
    assert [r["run_id"] for r in project.results()] == ["abc123abc123"]
    assert paths.output.read_text().count("run abc123abc123") == 1
    assert paths.log.read_text().count("(run abc123abc123)") == 1
    assert not list(paths.pending.iterdir())


def test_an_uncommitted_end_is_dropped_and_the_version_resumed(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    paths = half_written_end(project, committed=False, published=())
    result = project.run("-r", "-u", env=HOST)
    assert result.returncode == 0, result.output
    assert not list(paths.pending.iterdir())
    assert [(r["status"], r["resumed"]) for r in project.results()] == [("finished", True)]
    assert [e["event"] for e in project.journal()] == [
        "claimed", "started", "interrupted", "claimed", "started", "finished",
    ]


def test_a_cancel_of_a_cut_off_version_does_not_pass_for_its_uncommitted_end(project):
    # The dead daemon's uncommitted "finished" stays unpublished; the version is recorded
    # cancelled, once (recovery tells a commit by its run id: the cancel's end has its own).
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    paths = half_written_end(project, committed=False, published=())
    cancel = project.run("cancel", "a.py:v1", env=HOST)
    assert cancel.returncode == 0 and "a.py:v1 (cut off earlier) recorded as cancelled" in cancel.output, cancel.output
    assert project.run("-r", "-u", env=HOST).returncode == 0
    assert not list(paths.pending.iterdir())
    assert [r["status"] for r in project.results()] == ["cancelled"] and project.calls("train") == [], (project.journal(), project.results())


def test_a_pending_file_of_a_live_daemon_is_left_alone(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    paths = OutputPaths(project.outputs, "testhost")
    paths.pending.mkdir(parents=True)
    me = f"testhost:{os.getpid()}:{psutil.Process().create_time():.2f}"  # this test process: alive
    end = VersionEnd(run_id="live00000000", host="testhost", daemon=me, event="finished", journal_fields={}, record={})
    pending = paths.pending / "live--live00000000.json"
    pending.write_text(json.dumps(asdict(end)))
    assert project.run("-r", "-u", env=HOST).returncode == 0
    assert pending.exists()
