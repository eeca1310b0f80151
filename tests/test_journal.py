"""SPEC 7: the journal is append-only, durable, and survives torn and corrupt lines."""
import json
import multiprocessing

from mlpipeline.journal import Journal
from mlpipeline.records import plain_text
from mlpipeline.states import JournalEvent, RunState


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
    assert journal.state("a.py", "v1") is RunState.DONE
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
    assert after_crash.state("a.py", "v1") is RunState.DONE
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
    with open(path, "ab") as handle:
        handle.write(b"\x00\x00garbage\n")
    event(journal, JournalEvent.FINISHED)
    warnings = []
    reread = Journal(path, warnings.append)
    reread.refresh()
    assert reread.state("a.py", "v1") is RunState.DONE
    assert warnings == ["history.jsonl:2: not a journal event (corrupt or cut off); skipped"]


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
