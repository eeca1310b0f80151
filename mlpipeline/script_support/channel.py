"""The child's side of the event pipe: log messages and progress reports to the daemon, and
values made plain JSON before they cross.

The daemon passes the write end of a pipe in ``MLPIPELINE_EVENTS_FD``. Outside a daemon
(a script imported in a notebook, say) messages go to stderr instead.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any, Dict, List, Optional

from mlpipeline.records.files import json_text

EVENTS_FD_VARIABLE = "MLPIPELINE_EVENTS_FD"

_events_fd: Optional[int] = None
_last_metrics: Dict[str, Any] = {}


def _fd() -> Optional[int]:
    global _events_fd
    if _events_fd is None:
        value = os.environ.get(EVENTS_FD_VARIABLE)
        if value and value.isdigit():
            _events_fd = int(value)
    return _events_fd


def send_events_to(fd: Optional[int]) -> Optional[int]:
    """Send events to ``fd`` from now on (None: as the environment says); returns the one
    used before. For a version run in the caller's own process (executors/in_process.py)."""
    global _events_fd
    before, _events_fd = _events_fd, fd
    return before


def send(event: Dict[str, Any]) -> None:
    """Send one event to the daemon as a JSON line, or describe it on stderr without one."""
    fd = _fd()
    if fd is None:
        if event.get("type") == "log":
            print(event.get("message", ""), file=sys.stderr)
        return
    _write(fd, (json_text(event) + "\n").encode("utf-8"))


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            written = os.write(fd, data)
            data = data[written:]
    except OSError:
        # The daemon is gone or closed the pipe; the version's own work matters more.
        pass


def report(step: Any, total: Any, metrics: Dict[str, Any]) -> None:
    """Send a progress report, and keep each metric's last value: a version pausing at an
    early-stopping rung saves them beside its model, where a daemon that died before it read
    the report finds them (child/worker.py)."""
    plain = to_plain(metrics)
    if isinstance(plain, dict) and type(metrics) is dict:
        _say_objects_kept_as_names(metrics, plain)
    event = {"type": "report", "step": to_plain(step), "total": to_plain(total), "metrics": plain}
    data = (json_text(event) + "\n").encode("utf-8")
    if len(data) > REPORT_MOST_BYTES and isinstance(plain, dict):
        event["metrics"] = plain = _within_most(plain)
        data = (json_text(event) + "\n").encode("utf-8")
    if isinstance(plain, dict):
        _last_metrics.update(plain)
    fd = _fd()
    if fd is not None:
        _write(fd, data)


REPORT_MOST_BYTES = 1_000_000
"""The most one report may take as a JSON line: the daemon leaves out any event past 1 MiB,
so a report this large loses its largest metrics, not its step and its loss with them."""

_metrics_said: set = set()
"""The metrics warned of (left out, or no number): each is said once a process."""


def _say_objects_kept_as_names(metrics: Dict[Any, Any], plain: Dict[str, Any]) -> None:
    """Warn once for each metric whose value is an object that is no number (a tensor of
    several values, say): only its class name is recorded."""
    for name, value in metrics.items():
        kept = plain.get(name) if isinstance(name, str) else None
        if isinstance(kept, str) and not isinstance(value, (str, float)) and name not in _metrics_said:
            _metrics_said.add(name)
            try:
                shape = getattr(value, "shape", None)
                what = f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None and not callable(shape) else "")
            except Exception:  # noqa: BLE001 - an object whose shape cannot be read is named without it
                what = f"a {type(value).__name__}"
            log(
                f"report(): metric {name!r} is {what}, no number: it is recorded as {kept!r}; report a number "
                "(a one-value tensor's .item(), or .mean().item()) (said once)",
                "WARNING",
            )


def _within_most(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """``metrics`` less its largest values, until the rest fits in a report; each metric left
    out is said once (a log warning), not at every step."""
    sizes = {name: len(json_text({name: value}).encode("utf-8")) for name, value in metrics.items()}
    kept, room = dict(metrics), REPORT_MOST_BYTES - 200  # the step, the total, the braces
    for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if sum(sizes[other] for other in kept) <= room:
            break
        del kept[name]
        if name not in _metrics_said:
            _metrics_said.add(name)
            message = (
                f"report(): metric {name!r} ({sizes[name] / 1e6:.1f} MB as JSON) is left out of the report, which holds at "
                f"most {REPORT_MOST_BYTES / 1e6:g} MB; the rest of it is kept (said once)"
            )
            log(message, "WARNING")
    return kept


def last_metrics() -> Dict[str, Any]:
    """Each metric's last reported value since :func:`forget_metrics`."""
    return dict(_last_metrics)


def forget_metrics() -> None:
    """A new version starts (in-process runs share this module)."""
    _last_metrics.clear()


def log(message: str, level: str = "INFO") -> None:
    send({"type": "log", "level": level, "message": as_text(message)})


def as_text(value: Any) -> str:
    """``str(value)``, or its class name where that raises (a ``__str__`` of the script's, a
    structure nested past the recursion limit): a summary or a log line never fails a version."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - whatever the script's object raises
        return f"<{type(value).__name__}>"


PLAIN_VALUE = "_mlpipeline_plain_value_"
"""The method by which one of our objects (a Metric, a MetricContainer) says what it is as
JSON-ready data, so that this module needs to know none of them."""


MOST_NESTED = 32
"""Levels of lists and dicts kept of a value a script hands over; what lies deeper (a
structure that holds itself, say) is named, not followed."""

MOST_VALUES = 1_000_000
"""Values looked at in one value a script hands over: a list that holds itself twice, or one
list a thousand times over at each of a few levels, is billions of values to follow, and
far more than a record keeps (the result's 1 MiB)."""


def to_plain(value: Any) -> Any:
    """``value`` as JSON-ready data: objects become their class name, never a memory address.
    An object that raises while it is looked at (its ``items()``, a key's ``__str__``) is its
    class name too: a script's odd value never costs its version the result. What lies past
    MOST_NESTED levels or MOST_VALUES values is named as left out."""
    return _plain(value, 0, [MOST_VALUES])


def _plain(value: Any, depth: int, left: List[int]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MOST_NESTED:
        return f"{type(value).__name__} (nested more than {MOST_NESTED} levels deep: left out)"
    try:
        size = len(value) if isinstance(value, (dict, list, tuple, set, frozenset)) else 1
        if size > left[0]:
            return f"{type(value).__name__} (past {MOST_VALUES:,} values in all: left out)"
        left[0] -= size
        if type(value) is dict:  # the common case, first: report()'s metrics
            return {_key(k): _plain(v, depth + 1, left) for k, v in value.items()}
        as_plain = getattr(type(value), PLAIN_VALUE, None)
        if as_plain is not None:
            return _plain(as_plain(value), depth + 1, left)
        if isinstance(value, dict):
            return {_key(k): _plain(v, depth + 1, left) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_plain(v, depth + 1, left) for v in value]
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "shape", None) in ((), []):
            # numpy and torch scalars (a loss tensor, an accuracy) read as plain numbers.
            return _plain(item(), depth + 1, left)
    except Exception:  # noqa: BLE001 - any failure falls back to the class name
        pass
    return type(value).__name__


def _key(key: Any) -> str:
    """A dict key as the text JSON needs: ``str()`` of it (``1``, ``(1, 2)``), or its class name
    where that names a memory address or fails (an integer of more than 4,300 digits)."""
    if type(key) is str:
        return key
    try:
        text = str(key)
    except Exception:  # noqa: BLE001 - a key of the script's own that cannot say what it is
        return type(key).__name__
    return type(key).__name__ if " at 0x" in text else text
