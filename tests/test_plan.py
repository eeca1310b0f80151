"""The queue choice as a table (issue 22): how a version starts, or whether it is skipped, for
each way its last run ended, each history flag and whether its script changed since. The rows
are what SPEC 3 and docs/watching.md promise, written out one by one; the journal is a real
one in a temporary folder."""
import pytest

from mlpipeline.execution.plan import HistoryPolicy, Start, decide
from mlpipeline.records.journal import Journal
from mlpipeline.records.states import JournalEvent

FRESH, RESUME, SKIP = Start.FRESH, Start.RESUME, None

# (last event, script edited since, -u, --retry-failed, on_script_change, cut off this session) -> start
TABLE = [
    # Never run: always fresh.
    (None, False, False, False, "rerun", False, FRESH),
    (None, False, True, False, "rerun", False, FRESH),
    # Without -u every listed version runs once, from a clean model_dir...
    ("finished", False, False, False, "rerun", False, FRESH),
    ("failed", False, False, False, "rerun", False, FRESH),
    ("cancelled", False, False, False, "rerun", False, FRESH),
    ("timed_out", False, False, False, "rerun", False, FRESH),
    ("interrupted", False, False, False, "rerun", False, FRESH),
    # ... except what this session's own daemons lost (cut off), which resumes...
    ("interrupted", False, False, False, "rerun", True, RESUME),
    # ... unless its script was edited since, which starts it over (or not, with "keep").
    ("interrupted", True, False, False, "rerun", True, FRESH),
    ("interrupted", True, False, False, "keep", True, RESUME),
    # A version a live daemon runs is never chosen.
    ("started", False, False, False, "rerun", False, SKIP),
    ("claimed", False, True, False, "rerun", False, SKIP),
    # -u: finished work is skipped, cut-off work resumes.
    ("finished", False, True, False, "rerun", False, SKIP),
    ("interrupted", False, True, False, "rerun", False, RESUME),
    # -u: failed, timed-out and cancelled versions are left, unless --retry-failed.
    ("failed", False, True, False, "rerun", False, SKIP),
    ("timed_out", False, True, False, "rerun", False, SKIP),
    ("cancelled", False, True, False, "rerun", False, SKIP),
    ("failed", False, True, True, "rerun", False, FRESH),
    ("timed_out", False, True, True, "rerun", False, FRESH),
    ("cancelled", False, True, True, "rerun", False, FRESH),
    ("finished", False, True, True, "rerun", False, SKIP),
    # -u and an edited script: everything runs again from a clean model_dir ("rerun")...
    ("finished", True, True, False, "rerun", False, FRESH),
    ("failed", True, True, False, "rerun", False, FRESH),
    ("cancelled", True, True, False, "rerun", False, FRESH),
    ("interrupted", True, True, False, "rerun", False, FRESH),
    # ... or is judged as if unchanged ("keep").
    ("finished", True, True, False, "keep", False, SKIP),
    ("interrupted", True, True, False, "keep", False, RESUME),
    ("failed", True, True, True, "keep", False, FRESH),
]


@pytest.mark.parametrize("last, edited, use_history, retry_failed, on_change, cut_off, expected", TABLE)
def test_how_a_version_starts(tmp_path, last, edited, use_history, retry_failed, on_change, cut_off, expected):
    journal = Journal(tmp_path / "history.jsonl", lambda message: None)
    if last is not None:
        journal.append(JournalEvent(last), script="a.py", version="v", sha256="old", host="h", pid=1)
    policy = HistoryPolicy(use_history=use_history, retry_failed=retry_failed, on_script_change=on_change)
    lost = {("a.py", "v")} if cut_off else set()
    assert decide(journal, "a.py", "v", "new" if edited else "old", policy, lost) is expected
