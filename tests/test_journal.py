"""SPEC 7: the journal is append-only, durable, and survives torn and corrupt lines."""
import json
import multiprocessing

from mlpipeline.records.journal import Journal
from mlpipeline.records.text import plain_text
from mlpipeline.records.states import JournalEvent, RunState


def event(journal, kind, version="v1", script="a.py", sha="s1"):
    return journal.append(kind, script=script, version=version, sha256=sha, host="h", pid=1)


def test_states_follow_the_last_event(tmp_path):
    warnings = []
    journal = Journal(tmp_path / "history.jsonl", warnings.append)
    assert journal.state("a.py", "v1") is RunState.PENDING
    event(journal, JournalEvent.STARTED)
    assert journal.state("a.py", "v1") is RunState.RUNNING
    assert [r["version"] for r in journal.unfinished()] == ["v1"]
    event(journal, JournalEvent.FINISHED)
    assert journal.state("a.py", "v1") is RunState.FINISHED
    assert list(journal.unfinished()) == []
    reread = Journal(tmp_path / "history.jsonl", warnings.append)
    reread.refresh()
    assert reread.latest("a.py", "v1")["event"] == "finished"
    assert warnings == []


def test_a_torn_last_line_is_skipped_with_a_warning_and_later_appends_are_whole(tmp_path):
    path = tmp_path / "history.jsonl"
    journal = Journal(path, lambda message: None)
    event(journal, JournalEvent.STARTED)
    event(journal, JournalEvent.FINISHED)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"time":"2026-01-01","event":"star')  # power cut mid-write

    warnings = []
    after_crash = Journal(path, warnings.append)
    after_crash.refresh()
    assert after_crash.state("a.py", "v1") is RunState.FINISHED
    assert warnings == ["history.jsonl:3: last line is cut off (written during a crash?); skipped"]

    event(after_crash, JournalEvent.STARTED, version="v2")
    assert after_crash.state("a.py", "v2") is RunState.RUNNING
    assert path.read_bytes().startswith(whole)  # nothing earlier was rewritten

    warnings.clear()
    fresh = Journal(path, warnings.append)
    fresh.refresh()
    assert fresh.state("a.py", "v2") is RunState.RUNNING
    assert warnings == ["history.jsonl:3: not a journal event (corrupt or cut off); skipped"]


def test_a_corrupt_middle_line_is_skipped_with_its_number(tmp_path):
    path = tmp_path / "history.jsonl"
    journal = Journal(path, lambda message: None)
    event(journal, JournalEvent.STARTED)
    corrupt = [
        b"\x00\x00garbage",
        b"[1, 2]",  # JSON, not an event
        b'{"event": "finished", "script": ["a.py"], "version": "v1"}',  # a list for a name
        b'{"event": "exploded", "script": "a.py", "version": "v1"}',  # no such event
        b'{"event": "finished", "script": "a.py", "version": "v1"} {"x": 1}',  # two values on a line
        b'{"event": "finished", "script": "a.py", "version": "v1", "bytes": "\xff"}',  # not UTF-8
    ]
    with open(path, "ab") as handle:
        handle.write(b"\n".join(corrupt) + b"\n")
    event(journal, JournalEvent.FINISHED)
    warnings = []
    reread = Journal(path, warnings.append)
    reread.refresh()
    assert reread.state("a.py", "v1") is RunState.FINISHED
    assert warnings == [
        f"history.jsonl:{number}: not a journal event (corrupt or cut off); skipped" for number in range(2, 2 + len(corrupt))
    ]


def _append_many(path, writer, count):
    journal = Journal(path, lambda message: None)
    for index in range(count):
        journal.append(JournalEvent.STARTED, script=f"w{writer}.py", version=f"v{index}", sha256="x" * 64, note="y" * 300)


def test_concurrent_appenders_never_interleave(tmp_path):
    path = tmp_path / "history.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, writer, 100)) for writer in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 400
    for line in lines:
        json.loads(line)
    warnings = []
    journal = Journal(path, warnings.append)
    journal.refresh()
    assert warnings == []
    assert len(list(journal.unfinished())) == 400


def test_another_writers_events_are_seen_on_refresh(tmp_path):
    path = tmp_path / "history.jsonl"
    reader = Journal(path, lambda message: None)
    reader.refresh()
    writer = Journal(path, lambda message: None)
    event(writer, JournalEvent.STARTED)
    assert reader.state("a.py", "v1") is RunState.PENDING
    reader.refresh()
    assert reader.state("a.py", "v1") is RunState.RUNNING


def test_plain_text_strips_escape_codes_and_progress_redraws():
    assert plain_text("\x1b[1m\x1b[32mgreen\x1b[0m") == "green"
    assert plain_text(" 10%|#   |\r 50%|#####|\r100%|########|") == "100%|########|"
    assert plain_text("tab\tstays, bell\x07 goes") == "tab\tstays, bell goes"


# -- property: whatever byte a crash cuts the journal at, what is read back is consistent ---

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EVENTS = st.lists(
    st.tuples(st.sampled_from(list(JournalEvent)), st.sampled_from(["a.py:v1", "a.py:v2", "b.py:ü"]), st.integers(0, 2)),
    min_size=1,
    max_size=7,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_a_cut_at_any_byte_reads_back_the_events_before_it(tmp_path_factory, events):
    folder = tmp_path_factory.mktemp("journal")
    path = folder / "history.jsonl"
    writers = [Journal(path, lambda message: None) for _ in range(3)]  # three daemons, interleaved
    written = []
    for kind, key, writer in events:
        script, version = key.split(":")
        written.append(writers[writer].append(kind, script=script, version=version, sha256="s", host=f"h{writer}"))
    data = path.read_bytes()
    ends = [index + 1 for index, byte in enumerate(data) if byte == ord("\n")]
    assert len(ends) == len(written)

    cut_path = folder / "cut.jsonl"
    for cut in range(len(data) + 1):
        cut_path.write_bytes(data[:cut])
        warnings = []
        journal = Journal(cut_path, warnings.append)
        journal.refresh()
        whole = sum(1 for end in ends if end <= cut)
        expected = {}
        for record in written[:whole]:
            expected[(record["script"], record["version"])] = record
        for script, version in {(r["script"], r["version"]) for r in written}:
            assert journal.latest(script, version) == expected.get((script, version))
        torn = cut not in [0] + ends
        assert len(warnings) == (1 if torn else 0), (cut, warnings)

        # A daemon that starts on the cut journal appends whole events after it.
        after = journal.append(JournalEvent.FINISHED, script="c.py", version="new", sha256="s")
        reread = Journal(cut_path, lambda message: None)
        reread.refresh()
        assert reread.latest("c.py", "new") == after
        for key, record in expected.items():
            assert reread.latest(*key) == record


def test_a_decision_is_appended_only_while_no_version_it_was_made_from_was_cancelled(tmp_path):
    # A rung's stops are decided together and appended one by one: a cancel landing between
    # two of them (from `mlpipeline cancel`, another process) voids the rest of the decision.
    journal = Journal(tmp_path / "history.jsonl", lambda message: None)
    paused = {version: event(journal, JournalEvent.PAUSED, version) for version in ("v1", "v2", "v3", "best")}
    basis = tuple(paused.values())
    fields = dict(script="a.py", sha256="s1", host="h", pid=1)
    assert journal.append_if_latest(paused["v1"], JournalEvent.STOPPED, not_cancelled=basis, version="v1", **fields) is not None
    # v1's own stop changes no ranking: the next stop of the same decision goes in.
    assert journal.append_if_latest(paused["v2"], JournalEvent.STOPPED, not_cancelled=basis, version="v2", **fields) is not None
    other = Journal(tmp_path / "history.jsonl", lambda message: None)
    other.refresh()
    event(other, JournalEvent.CANCELLED, "best")  # the version v3 ranked below: it counts no more
    assert journal.append_if_latest(paused["v3"], JournalEvent.STOPPED, not_cancelled=basis, version="v3", **fields) is None
    assert journal.state("a.py", "v3") is RunState.PAUSED
