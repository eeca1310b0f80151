"""How a child's end is classified (execution/outcome.py): one table, every cause of an end,
and a cancel that is CANCELLED at once unless the version finished first."""
import signal

import pytest

from mlpipeline.execution.outcome import classify
from mlpipeline.executors.base import ChildOutcome
from mlpipeline.records.states import JournalEvent

CANCEL = "cancelled by `mlpipeline cancel a.py` on host-a at 2026-12-02T10:00:00+00:00"
KILLED = -signal.SIGKILL

CASES = [
    # (result, returncode, stop_signal, timed_out, cancel reason) -> event, message contains
    ({"ok": True}, 0, None, False, None, JournalEvent.FINISHED, None),
    ({"ok": True}, 0, None, False, CANCEL, JournalEvent.FINISHED, None),  # it finished before the kill
    (None, KILLED, signal.SIGKILL, False, CANCEL, JournalEvent.CANCELLED, "mlpipeline cancel a.py"),
    ({"ok": False, "cut_off": True}, 1, None, False, CANCEL, JournalEvent.CANCELLED, "mlpipeline cancel a.py"),
    ({"ok": False, "cut_off": True, "error": {"message": "daemon silent"}}, 1, None, False, None, JournalEvent.INTERRUPTED, "daemon silent"),
    (None, KILLED, None, True, None, JournalEvent.TIMED_OUT, "version_timeout (5 s)"),
    (None, -signal.SIGINT, signal.SIGINT, False, None, JournalEvent.INTERRUPTED, "stopped by SIGINT; resumable with -u"),
    (None, -signal.SIGSEGV, None, False, None, JournalEvent.FAILED, "was killed by SIGSEGV before it reported a result"),
    (None, KILLED, None, False, None, JournalEvent.FAILED, "the out-of-memory killer, or kill -9"),
    ({"ok": False, "error": {"message": "a.py:v failed in train_model: ValueError: x"}}, 1, None, False, None, JournalEvent.FAILED, "ValueError: x"),
]


@pytest.mark.parametrize("result, returncode, stop_signal, timed_out, cancel, event, message", CASES)
def test_each_end_is_classified_once(result, returncode, stop_signal, timed_out, cancel, event, message):
    outcome = ChildOutcome(result, returncode, 1.0, stop_signal=stop_signal, timed_out=timed_out)
    got, recorded = classify(outcome, "a.py:v", 5.0, cancel)
    assert got is event
    if message is None:
        assert "error" not in recorded
    else:
        assert message in recorded["error"]["message"]
