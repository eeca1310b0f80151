"""Issue 20: every file mlpipeline reads back survives any byte sequence in it. A line that does
not decode to what is expected is skipped with one warning naming file and line; nothing a
reader holds grows with a line's length; no reader raises."""
import hashlib
import json
import os
import subprocess
import time

import psutil
import pytest
from conftest import versions_code
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_daemon_death import SLOW, checkpoint

from mlpipeline.records.control import ControlReader, append_request
from mlpipeline.records.ends import RecordKeeper
from mlpipeline.records.heartbeat import live_daemons
from mlpipeline.records.identity import DaemonIdentity
from mlpipeline.records.journal import Journal
from mlpipeline.records.lines import FileTail, LineSplitter, RecordError, decode_object, read_object
from mlpipeline.records.files import number
from mlpipeline.records.metric_history import last_run_id, read_history_file
from mlpipeline.records.metric_series import MetricSeries, read_metric_series
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.states import JournalEvent, RunState

DEEP = b"[" * 200000 + b"]" * 200000
DEEP_OBJECT = b'{"a":' * 100000 + b"1" + b"}" * 100000
HOSTILE = [
    DEEP,
    DEEP_OBJECT,
    b"\xff\xfe\xfa not utf-8",
    b"\x00" * 64,
    b"1" * 5000,  # an integer past Python's digit limit
    b'"\\ud800"',
    b"NaN",
    b"[]",
    b'{"event": "finished", "script": [], "version": {}}',
    b'{"event": "finished", "script": "a.py", "version": null}',
    b'{"event": "no such event", "script": "a.py", "version": "v"}',
    b'{"action": "cancel", "script": 7}',
    b'{"metrics": [1, 2]}',
    b'{"a": 1} {"b": 2}',
    b"\x1b[31m red \x1b[0m",
    # Whole JSON, fields of the wrong type: ids no set can hold, a version's name that is a number.
    b'{"event": "finished", "script": "a.py", "version": "v1", "run_id": [1], "daemon": {}}',
    b'{"event": "started", "script": "a.py", "version": NaN, "child_pid": -5}',
    b'{"event": "finished", "script": "a.py", "version": "v1", "host": "\\ud800"}',  # a lone surrogate: no text
]
any_line = st.one_of(st.sampled_from(HOSTILE), st.binary(max_size=300).map(lambda data: data.replace(b"\n", b"")))


def test_decode_object_refuses_everything_but_one_object_with_a_reason():
    assert decode_object(b' {"a": [1, {"b": null}]}\r') == {"a": [1, {"b": None}]}
    reasons = []
    for line in HOSTILE[:8] + [b'{"a": 1} {"b": 2}']:
        with pytest.raises(RecordError) as caught:
            decode_object(line)
        reasons.append(str(caught.value))
    assert reasons[:3] == ["nested too deep", "nested too deep", "not UTF-8"]
    assert reasons[3:] == ["not JSON", "a number of more than 4,300 digits", "a JSON string, not an object", "a JSON number, not an object", "a JSON array, not an object", "more than one value on the line"]


def test_a_lone_surrogate_anywhere_is_refused_and_a_pair_or_an_escaped_backslash_is_kept():
    for line in (b'{"a": "\\ud800"}', b'{"\\uDC00": 1}', b'{"a": [[{"b": "x\\udfff y"}]]}', b'{"a": "\\ude00\\ud83d"}'):
        with pytest.raises(RecordError, match="lone UTF-16 surrogate"):
            decode_object(line)
    assert decode_object(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {"a": "\U0001F600", "b": "\\ud800"}


def test_the_splitter_keeps_no_more_of_a_line_than_its_limit_and_numbers_every_line():
    splitter = LineSplitter(limit=10)
    lines = []
    for chunk in [b"short\nabc", b"defghijklmnop", b"qrstuv", b"wxyz\nok\npart"]:
        lines += splitter.feed(chunk)
    assert lines == [(1, b"short"), (2, None), (3, b"ok")]
    assert splitter.has_partial and splitter.abandon_partial() == 4
    assert splitter.feed(b"ial rest of the torn line\nnext\n") == [(5, b"next")]


def test_a_followed_file_is_read_once_and_an_endless_line_holds_the_limit_only(tmp_path):
    path = tmp_path / "control.jsonl"
    path.write_bytes(b'{"action": "pause"}\n' + b"x" * (30 << 20))  # 30 MB without a newline
    tail = FileTail(path, limit=64 << 10)
    import tracemalloc

    tracemalloc.start()
    first = tail.read_new()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [number for number, _ in first.lines] == [1, 2] and first.lines[1][1] is None
    assert peak < 4 << 20, peak  # chunks of 1 MiB and 64 KiB of the line, never the 30 MB
    assert tail.offset == path.stat().st_size
    assert tail.read_new().lines == []  # nothing new: nothing read again
    with open(path, "ab") as handle:
        handle.write(b'x\n{"action": "resume"}\n')
    assert tail.read_new().lines == [(3, b'{"action": "resume"}')]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(any_line, min_size=1, max_size=3), torn=st.binary(max_size=50))
def test_the_journal_reads_around_any_bytes_and_keeps_every_whole_event(tmp_path_factory, garbage, torn):
    path = tmp_path_factory.mktemp("journal") / "history.jsonl"
    writer = Journal(path, lambda message: None)
    writer.append(JournalEvent.STARTED, script="a.py", version="v1", sha256="s", host="h", pid=1)
    with open(path, "ab") as handle:
        handle.write(b"\n".join(garbage) + b"\n")
    writer.append(JournalEvent.FINISHED, script="a.py", version="v1", sha256="s", host="h", pid=1)
    with open(path, "ab") as handle:
        handle.write(torn.replace(b"\n", b""))
    warnings = []
    reader = Journal(path, warnings.append)
    reader.read_without_lock()
    assert reader.state("a.py", "v1") is RunState.FINISHED
    reader.refresh()
    reader.append(JournalEvent.STARTED, script="a.py", version="v2", sha256="s", host="h", pid=1)
    again = Journal(path, lambda message: None)
    again.refresh()
    assert again.state("a.py", "v1") is RunState.FINISHED and again.state("a.py", "v2") is RunState.RUNNING
    assert all(warning.startswith("history.jsonl:") for warning in warnings), warnings


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(any_line, min_size=1, max_size=3))
def test_control_requests_around_any_bytes_are_read_and_each_bad_line_warned_once(tmp_path_factory, garbage):
    outputs = tmp_path_factory.mktemp("outputs")
    append_request(outputs, "pause")
    with open(outputs / "control.jsonl", "ab") as handle:
        handle.write(b"\n".join(garbage))  # the last without its newline: the next request ends it
    append_request(outputs, "cancel", "a.py", "v1")
    warnings = []
    requests = ControlReader(outputs, warnings.append).read_new()
    assert [request.action for request in requests] == ["pause", "cancel"]
    assert all(warning.startswith("control.jsonl:") and "skipped" in warning for warning in warnings)
    aside = sorted(outputs.glob("control-*.jsonl"))
    if aside:  # the garbage grew the file past 1 MiB: the cancel compacted it, the garbage kept aside whole
        assert all(line in aside[0].read_bytes() for line in garbage) and warnings == []
    else:
        assert len(warnings) == sum(1 for line in garbage if line.strip())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=any_line)
def test_histories_heartbeats_and_pending_ends_survive_any_bytes(tmp_path_factory, garbage):
    folder = tmp_path_factory.mktemp("records")
    history = folder / "metrics.jsonl"
    good = json.dumps({"run_id": "r1", "step": 1, "metrics": {"loss": 1.0}}).encode()
    history.write_bytes(good + b"\n" + garbage + b"\n" + good.replace(b"r1", b"r2") + b"\n" + garbage)
    warnings = []
    assert [row["run_id"] for row in read_history_file(history, warnings.append)] == ["r1", "r2"]
    assert all(warning.startswith(f"{history}:2: not a report") for warning in warnings)
    # The last 64 KiB are read for it: past a longer torn tail the old file is named before-<run>.
    assert last_run_id(history) == ("r2" if len(garbage) < 60000 else None)

    beats = folder / "heartbeats"
    beats.mkdir()
    (beats / "other-daemon").write_bytes(garbage)
    assert live_daemons(beats, DaemonIdentity.current()) == {}
    try:
        expected = decode_object(garbage)
    except RecordError:
        expected = None
    assert read_object(beats / "other-daemon") == expected

    paths = OutputPaths(folder, "h")
    paths.pending.mkdir(parents=True, exist_ok=True)
    (paths.pending / "x.json").write_bytes(garbage)
    ended = []
    keeper = RecordKeeper(paths, Journal(paths.journal, ended.append), "d", True, ended.append)
    assert keeper.recover(lambda host, daemon, namespace: True) == 0
    assert not (paths.pending / "x.json").exists() and "an unreadable pending record; set aside as x.json.unreadable" in ended[-1]
    assert (paths.pending / "x.json.unreadable").read_bytes() == garbage


REPORT = '{"time": "2026-12-02T10:00:00.000+00:00", "run_id": "r1", "step": %s, "total": 9, "metrics": {"loss": %s, "acc": 0.5}}'
# Lines that, read as one JSON array, would pass for the right count of reports: two values
# on one line beside a report broken over two lines (by a list, an open object, a string).
FOOLING = [
    b'{"metrics": {"loss": 7.0}}, {"metrics": {"loss": 8.0}}',
    b'{"metrics": {"loss": 9.0}, "x": [{}',
    b'{}]}',
    b'{"metrics": {"loss": 9.5}, "x": 1',
    b'"y": 2}',
    b'{"metrics": {"loss": 3.0}, "s": "a',
    b'b"}',
    b' {"metrics": {"loss": 4.0}}',
    b'',
    b'{"metrics": {"loss": NaN}, "run_id": "r1"}',
    # What orjson reads otherwise than json: an integer past 64 bits (a float there), a lone
    # surrogate and a number past a float's range (refused there).
    b'{"metrics": {"loss": 18446744073709551617}, "run_id": 18446744073709551617, "step": -9223372036854775809}',
    b'{"metrics": {"loss": 1.0, "s": "\\ud800"}, "run_id": "r1"}',
    b'{"metrics": {"loss": 1e400}, "run_id": "r1", "step": 1' + b'0' * 400 + b'}',
]
a_history_line = st.one_of(
    st.builds(lambda step, loss: (REPORT % (step, loss)).encode(), st.sampled_from(["1", "2.5", "null", '"x"', "1e999"]),
              st.sampled_from(["0.25", "3", '"nan"', '"-inf"', "true", "null", '"a string"', "-0.0"])),
    st.sampled_from(FOOLING),
    any_line,
)


def strict_series(path, metric):
    """What the line-by-line reader makes of the file: the rule the fast reader must keep."""
    reports = list(read_history_file(path))
    return MetricSeries([report.get("run_id") for report in reports], [number(report.get("step")) for report in reports],
                        [number(report["metrics"].get(metric)) for report in reports])


def same_series(one, other):
    """Equal, NaN counted equal to NaN."""
    same = lambda a, b: a == b or (a != a and b != b)  # noqa: E731
    return all(len(x) == len(y) and all(map(same, x, y)) for x, y in zip(one, other))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(a_history_line, max_size=8), torn=st.binary(max_size=40).map(lambda data: data.replace(b"\n", b"")))
@example(lines=[REPORT.encode() % (b"1", b"2"), *FOOLING[0:3]], torn=b"")
@example(lines=[FOOLING[0], FOOLING[3], FOOLING[4]], torn=b"")
@example(lines=[FOOLING[0], FOOLING[5], FOOLING[6]], torn=b"")
@example(lines=[REPORT.encode() % (b"1", b"2"), *FOOLING[7:10]], torn=b"")
@pytest.mark.parametrize("decoder", ["orjson", "json"])
def test_plot_reads_a_metric_as_the_strict_reader_does_whatever_the_bytes(tmp_path_factory, monkeypatch, decoder, lines, torn):
    import mlpipeline.records.metric_series as metric_series

    if decoder == "json":  # as without the plot extra's orjson
        monkeypatch.setattr(metric_series, "_orjson_loads", None)
    else:
        assert metric_series._orjson_loads is not None, "orjson (the plot extra) is not installed"
    history = tmp_path_factory.mktemp("records") / "metrics.jsonl"
    history.write_bytes(b"".join(line + b"\n" for line in lines) + torn)
    warnings = []
    assert same_series(read_metric_series(history, "loss", warnings.append), strict_series(history, "loss"))
    assert warnings == [] or all(warning.startswith(f"{history}:") for warning in warnings)


def test_plot_reads_a_long_history_in_pieces_as_it_reads_a_short_one(tmp_path, monkeypatch):
    import mlpipeline.records.metric_series as metric_series

    history = tmp_path / "metrics.jsonl"
    history.write_text("".join(REPORT % (step, step / 10) + "\n" for step in range(1, 2001)))
    monkeypatch.setattr(metric_series, "_PIECE", 1000)  # pieces of a few lines, each ending inside a line
    series = read_metric_series(history, "loss")
    assert series.steps == [float(step) for step in range(1, 2001)] and series.values == [step / 10 for step in range(1, 2001)]
    assert same_series(series, strict_series(history, "loss"))


# -- against real daemons -----------------------------------------------------------------


def test_a_deeply_nested_control_line_costs_a_running_daemon_one_warning(project):
    project.script("a.py", versions_code(SLOW.replace("epoc_count=20", "epoc_count=2"), 'versions.addV("quick", model_dir_suffix="q")'))
    project.queue(["a.py"])
    project.outputs.mkdir(parents=True)
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: checkpoint(project) >= 5, what="the version to train")
    with open(project.outputs / "control.jsonl", "ab") as handle:
        handle.write(DEEP + b"\n")
    output, _ = daemon.communicate(timeout=90)
    assert daemon.returncode == 0, output
    assert "Traceback" not in output and "control.jsonl:1: not a request" in output
    assert [e["event"] for e in project.journal() if e["version"] == "slow"] == ["claimed", "started", "finished"]
    assert project.log_text().count("control.jsonl:1: not a request") == 1
    for command in (["-r", "-u"], ["status"], ["status", "--json"]):
        result = project.run(*command)
        assert result.returncode == 0 and "Traceback" not in result.output, (command, result.output)
    assert project.run("cancel", "a.py:quick").returncode in (0, 2)  # appending after it still works


def test_a_deeply_nested_journal_line_is_skipped_with_its_line_everywhere(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    journal = project.outputs / "history.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [DEEP + b"\n", b"\xff\x00garbage\n"] + lines[2:]))
    status = project.run("status")
    assert status.returncode == 0 and "Traceback" not in status.output, status.output
    assert "history.jsonl:3: not a journal event" in status.output and "history.jsonl:4" in status.output
    again = project.run("-r", "-u")
    assert again.returncode == 0 and "Traceback" not in again.output, again.output
    assert "history.jsonl:3: not a journal event" in again.output
    assert len(project.calls("train")) == 2  # both finished before: neither ran again


def test_deep_lines_in_results_and_metric_histories_cost_compare_and_plot_a_warning(project, tmp_path):
    pytest.importorskip("matplotlib")
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2", learning_rate=0.2)'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    with open(project.outputs / "results.jsonl", "ab") as handle:
        handle.write(DEEP + b"\n" + b'{"script": "a.py", "version": "v1", "status": "finished"' + b" " * 10 + b"\xff\n")
    history = project.outputs / "model_ckpts" / "a" / ".mlpipeline" / "metrics.jsonl"
    lines = history.read_bytes().splitlines(keepends=True)
    history.write_bytes(b"".join(lines[:1] + [DEEP + b"\n"] + lines[1:]))
    compare = project.run("compare", "--json", "--best")
    assert compare.returncode == 0 and "Traceback" not in compare.output, compare.output
    rows = json.loads(compare.stdout, parse_constant=lambda token: pytest.fail(f"bare {token}"))
    assert {row["version"] for row in rows} == {"a.py:v1", "a.py:v2"}
    assert "results.jsonl:3: not a version's record; skipped" in compare.stderr
    assert "results.jsonl:4: not a version's record; skipped" in compare.stderr
    # compare --best takes each run's best from its row; plot reads the history, and says so.
    plot = project.run("plot", "loss", "-o", str(tmp_path / "loss.png"))
    assert plot.returncode == 0 and "Traceback" not in plot.output, plot.output
    assert f"{history}:2: not a report" in plot.stderr
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_an_endless_control_line_keeps_the_daemon_small_and_a_later_cancel_still_works(project):
    project.script("a.py", versions_code(SLOW))
    project.queue(["a.py"])
    project.outputs.mkdir(parents=True)
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: checkpoint(project) >= 5, what="the version to train")
    with open(project.outputs / "control.jsonl", "ab") as handle:
        for _ in range(100):
            handle.write(b"x" * (1 << 20))  # 100 MB, no newline
    time.sleep(3)  # six control checks
    rss_mb = psutil.Process(daemon.pid).memory_info().rss / 2**20
    assert rss_mb < 100, rss_mb  # SPEC 11's bound on the daemon, whatever a file holds
    cancel = project.run("cancel", "a.py:slow")
    assert cancel.returncode == 0, cancel.output
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0 and "Traceback" not in output, output
    assert [e["event"] for e in project.journal()][-1] == "cancelled"
    # The cancel found the file past 1 MiB and compacted it: the 100 MB are kept aside, whole.
    aside = list(project.outputs.glob("control-*.jsonl"))
    assert len(aside) == 1 and os.path.getsize(aside[0]) == 100 << 20  # nothing of it was removed
    assert os.path.getsize(project.outputs / "control.jsonl") < 1 << 10


def test_a_hostile_models_config_is_a_config_error_or_a_warning(project):
    project.script("a.py", versions_code('versions.addV("v1", sleep_per_step=0.05)', 'versions.addV("v2")'))
    good = project.queue(["a.py"])
    good_text = good.read_bytes()
    for bad in (b"[MLP]\nuse_blacklist = " + b"[" * 100000, b"[MLP]\nuse_blacklist = false\xff\n", b"\x00" * 10):
        good.write_bytes(bad)
        result = project.run("-r")
        assert result.returncode == 2 and "Traceback" not in result.output, result.output
        assert "models.config" in result.output
    (project.root / "mlp.config").write_bytes(b'[MLP]\nmodels_dir = "models"\nworkers = ' + b"[" * 100000)
    result = project.run("-r")
    assert result.returncode == 2 and "mlp.config: not valid TOML: arrays or tables nested too deep" in result.output
    (project.root / "mlp.config").write_text('[MLP]\nmodels_dir = "models"\n')

    good.write_bytes(good_text)
    daemon = project.start("-r")
    project.wait_for(lambda: checkpoint(project) >= 3, what="v1 to train")
    good.write_bytes(b"[MLP]\nuse_blacklist = " + b"[" * 100000)
    output, _ = daemon.communicate(timeout=90)
    assert daemon.returncode == 0 and "Traceback" not in output, output
    assert "models.config: not valid TOML: arrays or tables nested too deep; the last good queue stays in force" in output
    assert [row["version"] for row in project.results()] == ["v1", "v2"]


def _with_raw(line: str, field: str, raw: str) -> str:
    """``line`` (a JSON object) with ``field`` set to the JSON text ``raw``, as a hand edit leaves it."""
    record = json.loads(line)
    record[field] = "\x01"
    return json.dumps(record).replace('"\\u0001"', raw)


WRONG_TYPES = [("version", "NaN"), ("version", "1e400"), ("run_id", "[1, 2]"), ("daemon", "{}"), ("child_pid", "-5"),
               ("child_pid", "true"), ("script", '"\\ud800"'), ("host", '"\\ud800"')]


def test_journal_events_whose_names_have_the_wrong_type_are_skipped_with_their_line_everywhere(project):
    """A started event of a version named NaN, which no end matched, had -u write 'interrupted'
    without end; a list where a run id belongs crashed every reader."""
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    journal = project.outputs / "history.jsonl"
    clean = journal.read_bytes()
    started = next(line for line in clean.decode().splitlines() if '"event":"started"' in line)
    number = clean.count(b"\n") + 1
    for field, raw in WRONG_TYPES:
        edited = _with_raw(started.replace('"run_id":"', '"run_id":"0bad'), field, raw)
        journal.write_bytes(clean + edited.encode() + b"\n")
        for command in (["-r", "-u"], ["status"], ["status", "--json"], ["cancel", "a.py:v1"]):
            result = project.run(*command, timeout=60)
            assert result.returncode in (0, 1) and "Traceback" not in result.output, (field, raw, command, result.output)
            assert f"history.jsonl:{number}: not a journal event" in result.output, (field, raw, command, result.output)
        assert journal.read_bytes().count(b"\n") == number, (field, raw)  # nothing ran, nothing was written
    assert len(project.calls("train")) == 2


def test_values_of_the_wrong_type_in_ends_and_results_cost_status_compare_and_plot_nothing(project, tmp_path):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2", learning_rate=0.2)'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    journal = project.outputs / "history.jsonl"
    lines = journal.read_text().splitlines()
    ends = [index for index, line in enumerate(lines) if '"event":"finished"' in line]
    for field, raw in (("duration_s", '"x"'), ("metrics", '"x"'), ("eval_test", "[1]"), ("time", '"yesterday"')):
        lines[ends[0]] = _with_raw(lines[ends[0]], field, raw)
    for field, raw in (("duration_s", "1e400"), ("metrics", "1.5")):
        lines[ends[1]] = _with_raw(lines[ends[1]], field, raw)
    journal.write_text("\n".join(lines) + "\n")
    results = project.outputs / "results.jsonl"
    rows = results.read_text().splitlines()
    first = _with_raw(_with_raw(_with_raw(rows[0], "metrics", "1.5"), "parameters", '"x"'), "model_dir", '"a\\u0000b"')
    # A key written twice: its head names v3 finished, its whole v1 failed.
    twice = rows[1].replace('"version": "v2"', '"version": "v3"', 1)[:-1] + ', "status": "failed", "version": "v1"}'
    results.write_text("\n".join([first, _with_raw(rows[1], "model_dir", '"' + "d" * 300 + '"'), twice]) + "\n")
    for command in (["status"], ["status", "--json"], ["compare"], ["compare", "--best"], ["compare", "--json"],
                    ["plot", "loss", "-o", str(tmp_path / "loss.png")]):
        result = project.run(*command, timeout=60)
        # plot: neither version's history can be found, which it says (exit 1)
        assert result.returncode == (1 if command[0] == "plot" else 0) and "Traceback" not in result.output, (command, result.output)
        if command == ["status"]:
            assert "a.py:v1" in result.output and "a.py:v2" in result.output and "finished" in result.output
    compare = project.run("compare")
    assert "results.jsonl:3: names its version or state twice, differently; skipped" in compare.output
    assert "a.py:v1" in compare.output and "a.py:v2" in compare.output and "a.py:v3" not in compare.output
    plot = project.run("plot", "loss", "-o", str(tmp_path / "loss.png"))
    assert "embedded null byte" in plot.output and "File name too long" in plot.output


@pytest.mark.parametrize(
    "modules",
    ['[["a\\u0000b", 1, 2]]', '[["x", "1", 2]]', '[[1, 2, 3]]', '"sweep.py"', '[["x", 1e999, 2]]', "[" * 5000 + "]" * 5000],
)
def test_a_kept_listing_of_any_shape_is_listed_again_not_trusted(project, modules):
    project.write("models/sweep.py", 'NAMES = ["v1"]\n')
    project.script("a.py", "from sweep import NAMES\n" + versions_code("for name in NAMES: versions.addV(name)"))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    [kept] = (project.outputs / ".listings").glob("*.json")
    listing = json.loads(kept.read_text())
    assert [stamp[0] for stamp in listing["modules"]] == [str(project.models / "sweep.py")]
    kept.write_text(kept.read_text().replace(json.dumps(listing["modules"]), modules).replace('["v1"]', '["v1", "ghost"]'))
    result = project.run("status", "--json")
    assert result.returncode == 0 and "Traceback" not in result.output, result.output
    assert [row["version"] for row in json.loads(result.stdout)] == ["v1"]


def test_a_byte_order_mark_an_editor_put_first_costs_no_record(project, tmp_path):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    assert project.run("pause").returncode == 0
    files = [project.outputs / name for name in ("history.jsonl", "results.jsonl", "control.jsonl")]
    files += list(project.outputs.glob("model_ckpts/*/.mlpipeline/metrics.jsonl"))
    assert len(files) == 4
    for path in files:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    status = project.run("status")
    assert "a.py:v1" in status.output and "finished" in status.output and "the queue is paused" in status.output
    for command in (["status"], ["compare"], ["plot", "loss", "-o", str(tmp_path / "loss.png")], ["-r", "-u"]):
        result = project.run(*command)
        assert "; skipped" not in result.output and "not a" not in result.output, (command, result.output)
    assert [row["version"] for row in project.results()] == ["v1"]  # -u ran nothing again


def test_a_results_row_a_crash_cut_off_is_said_and_one_being_written_is_not(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2", learning_rate=0.2)'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    results = project.outputs / "results.jsonl"
    results.write_bytes(results.read_bytes()[:-40])
    fresh = project.run("compare")  # as an append in progress looks: nothing said
    assert fresh.returncode == 0 and "cut off" not in fresh.output and "a.py:v1" in fresh.output
    old = time.time() - 60
    os.utime(results, (old, old))
    torn = project.run("compare")
    assert "results.jsonl:2: last line is cut off (written during a crash?); skipped" in torn.output
    assert "a.py:v1" in torn.output and "a.py:v2" not in torn.output


def test_a_record_file_that_cannot_be_opened_is_named(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    control = project.outputs / "control.jsonl"
    control.symlink_to(control)  # a link to itself: ELOOP, as no permission would be for a user
    status = project.run("status")
    assert status.returncode == 0 and "Traceback" not in status.output, status.output
    assert "control.jsonl: cannot be read (Too many levels of symbolic links); no pause, resume or cancel can be read from it" in status.output
    journal = project.outputs / "history.jsonl"
    journal.unlink()
    journal.symlink_to(journal)
    for command in (["status"], ["status", "--json"], ["-r", "-u"]):
        result = project.run(*command, timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.output, (command, result.output)
        assert "history.jsonl: cannot be" in result.output and "Too many levels of symbolic links" in result.output


@pytest.mark.parametrize("line, said", [
    ("x = " + "1" * 5000, "mlp.config:3: not valid TOML here: a number of more than 4,300 digits"),
    ('outputs_dir = "out\\u0000"', "mlp.config:3: 'outputs_dir' holds a NUL character"),
    ("version_timeout = nan", "mlp.config:3: version_timeout must be 0 (none) or a finite number of seconds, not nan"),
    ("version_timeout = inf", "mlp.config:3: version_timeout must be 0 (none) or a finite number of seconds, not inf"),
])
def test_config_values_python_cannot_take_are_named_with_their_line(project, line, said):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    (project.root / "mlp.config").write_text(f'[MLP]\nmodels_dir = "models"\n{line}\n')
    for command in (["-r"], ["status"], ["compare"]):
        result = project.run(*command)
        assert result.returncode == 2 and said in result.output and "Traceback" not in result.output, (command, result.output)


PENDING_SLIPS = [("record", None), ("record", [1, 2]), ("record", {}), ("record", {"run_id": 5}),
                 ("record", {"time": "t", "host": "h", "script": "a.py", "version": "v", "status": "finished", "duration_s": "x"}),
                 ("log_lines", "x"),
                 ("log_lines", [[5, "a", "b"]]), ("log_lines", [5]), ("run_id", [1]), ("event", "no such event"),
                 ("write_log", "yes"), ("journal_fields", None)]


@pytest.mark.parametrize("field, value", [(None, None)] + PENDING_SLIPS)
def test_a_pending_end_of_the_wrong_shape_is_removed_and_writes_nothing(tmp_path, field, value):
    """A dead daemon's half-committed end, edited: before, each -r wrote its 'record' to
    results.jsonl as it was and then crashed, leaving the file for the next -r to do again."""
    paths = OutputPaths(tmp_path, "h")
    paths.pending.mkdir(parents=True)
    journal = Journal(paths.journal, lambda message: None)
    journal.append(JournalEvent.FINISHED, script="a.py", version="v", run_id="r1", sha256="s", host="h", pid=1, daemon="dead")
    row = {"time": "2026-12-07T10:00:00.000+00:00", "host": "h", "script": "a.py", "version": "v", "status": "finished",
           "reason": None, "run_id": "r1", "duration_s": 1.5}
    end = {"run_id": "r1", "host": "h", "daemon": "dead", "event": "finished", "journal_fields": {"script": "a.py", "version": "v"},
           "record": row, "log_lines": [["INFO", "a.py:v", "finished (run r1)"]], "write_log": True, "namespace": None}
    if field is not None:
        end[field] = value
    (paths.pending / "dead--r1.json").write_text(json.dumps(end))
    said = []
    keeper = RecordKeeper(paths, Journal(paths.journal, said.append), "alive", True, said.append)
    recovered = keeper.recover(lambda host, daemon, namespace: True)
    assert not list(paths.pending.glob("*.json"))
    if field is None:  # as a dead daemon leaves it: finished here
        assert recovered == 1 and json.loads(paths.results.read_text())["run_id"] == "r1"
    else:
        assert recovered == 0 and not paths.results.exists() and "an unreadable pending record; set aside as dead--r1.json.unreadable" in said[-1]


def test_names_too_long_for_a_file_system_are_config_errors(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    queue = project.queue(["a.py"])
    queue.write_text(queue.read_text().replace('"a.py"', '"' + "a" * 300 + '.py"'))
    for command in (["-r"], ["status"], ["cancel", "a.py"]):
        result = project.run(*command)
        assert result.returncode == 2 and "Traceback" not in result.output, (command, result.output)
        assert "models.config:" in result.output and "names a file of more than 255 bytes" in result.output
    project.queue(["a.py"])
    (project.root / "mlp.config").write_text('[MLP]\nmodels_dir = "' + "z" * 100_000 + '"\n')
    result = project.run("-r")
    assert result.returncode == 2 and "mlp.config:2: models_dir cannot be looked at (File name too long)" in result.output


def test_output_for_a_program_on_a_full_disk_is_exit_1_not_a_traceback(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    for command in (["status"], ["status", "--json"], ["compare"], ["compare", "--json"], ["compare", "--csv"], ["compare", "--markdown"]):
        with open("/dev/full", "w") as full:
            result = subprocess.run(project.command(*command), stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        assert "the console cannot be written (No space left on device)" in result.stderr


def test_a_run_record_naming_no_script_costs_its_version_nothing(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    record = project.outputs / "model_ckpts" / "a" / ".mlpipeline" / "run.json"
    run = json.loads(record.read_text())
    record.write_text(json.dumps(dict(run, script=[1, 2])))
    again = project.run("-r")
    assert again.returncode == 0 and [row["status"] for row in project.results()] == ["finished", "finished"], again.output
    record.write_text(json.dumps(dict(run, script="other.py")))
    third = project.run("-r")
    assert third.returncode == 1 and "is other.py's (so says .mlpipeline/run.json in it)" in third.output


# Each file mlpipeline reads or writes again, and what it is for a user (where the project
# folder's root is ``root``); a FIFO, a device or a socket put in its place.
NOT_REGULAR = [
    "models/outputs/history.jsonl",
    "models/outputs/results.jsonl",
    "models/outputs/control.jsonl",
    "models/outputs/log-*",
    "models/outputs/model_ckpts/a/.mlpipeline/metrics.jsonl",
    "models.config",
    "mlp.config",
]


@pytest.mark.parametrize("name", NOT_REGULAR)
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_in_place_of_a_file_is_named_and_blocks_nothing(project, tmp_path, name, kind):
    """A FIFO would block whoever opens it for ever, /dev/zero feed a reader without end: each
    command ends within its time, without a traceback, and one says the file is none it can
    use, naming it."""
    pytest.importorskip("matplotlib")
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    assert project.run("pause").returncode == 0 and project.run("resume").returncode == 0  # control.jsonl
    [path] = project.root.glob(name)
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    said = []
    for command in (["status"], ["compare", "--best"], ["plot", "loss", "-o", str(tmp_path / "loss.png")], ["-r", "-u"], ["cancel", "a.py"]):
        result = project.run(*command, timeout=60)  # a hang fails here
        assert "Traceback" not in result.output and result.returncode in (0, 1, 2), (command, result.output)
        said.append(result.output)
    if kind == "device" and name.endswith("log-*"):
        return  # only ever appended to, never read back: a device takes the lines (/dev/full fails them)
    shown = str(path) if path.name not in ("models.config", "mlp.config") else path.name
    assert any(shown in output and ("not a regular file" in output or "no regular file" in output) for output in said), said


def test_a_listing_stays_current_when_a_module_is_touched_and_not_when_it_is_edited(tmp_path):
    from mlpipeline.queue.catalog import ScriptListing
    from mlpipeline.script_support.related_files import stamps

    module = tmp_path / "sweep.py"
    module.write_text("NAMES = ['v1']\n")
    [stamp] = stamps([str(module)])
    listing = ScriptListing(sha256="s", names=["v1"], modules=[[*stamp, hashlib.sha256(module.read_bytes()).hexdigest()]])
    assert listing.still_current()
    os.utime(module, ns=(stamp[1] + 10**9, stamp[1] + 10**9))  # touched, or checked out again as it was
    assert listing.still_current()
    module.write_text("NAMES = ['v1', 'v2']\n")
    assert not listing.still_current()
    module.unlink()
    assert not listing.still_current()
