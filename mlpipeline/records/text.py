"""Text from a script as our files and the console show it: escape codes and carriage-return
redraws out of log lines; other control characters, in a value meant for one line, shown as
their escapes; no memory addresses. Read by the daemon, the commands and the child alike, so
it imports only records/files.py, which each of them has already."""
from __future__ import annotations

import re
from typing import List, Sequence

from mlpipeline.records.files import BIDI_CONTROLS

# CSI (7- and 8-bit), then the string sequences (OSC, DCS, SOS, PM, APC), then the
# two-character ones. A string sequence counts only with its end and printable ASCII between:
# a lone introducer (or a C1 byte of mojibake) goes alone, never with the rest of the line.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-9;?<=>]*[ -/]*[@-~]|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[ -~]*(?:\x07|\x1b\\|\x9c)|\x1b[ -~]?"
)
_SLOW_PATH = re.compile(r"[\x1b\r\x80-\x9f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")
_UNPRINTABLE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}]")
_UNPRINTABLE_IN_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}]")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{6,}>")


def one_line(text: str) -> str:
    """``text`` as one line a terminal shows as it is: a control character (an escape code's
    ESC, a line break, a NUL, a bidirectional override) is written as its escape (``\\x1b``,
    ``\\n``, ``\\u202e``), so a value from a script can neither forge a line, nor drive the
    terminal, nor read as another."""
    if text.isprintable():  # the common case, in C: a table of 100,000 cells goes through here
        return text
    return _UNPRINTABLE.sub(_escaped, text)


def visible_lines(text: str) -> str:
    """:func:`one_line` that keeps line breaks and tabs: for messages of several lines."""
    return _UNPRINTABLE_IN_LINES.sub(_escaped, text)


def _escaped(match: "re.Match[str]") -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def without_addresses(text: str) -> str:
    """``text`` with the memory address of each ``<... object at 0x7f...>`` left out: it differs
    from run to run and tells a reader nothing."""
    return _ADDRESS.sub(">", text)


def plain_text(line: str) -> str:
    """``line`` without escape codes; of carriage-return redraws (progress bars) the last one;
    a bidirectional control shown as its escape (``\u202e``), so that no line reads as another."""
    line = _ESCAPES.sub("", line)
    if "\r" in line:
        parts = [part for part in line.split("\r") if part.strip()]
        line = parts[-1] if parts else ""
    return _BIDI.sub(_escaped, _CONTROL.sub("", line))


def plain_lines(lines: Sequence[str]) -> List[str]:
    """:func:`plain_text` of each line, the common case (no escape code, no carriage return,
    no line break inside a line) done for all lines at once."""
    joined = "\n".join(lines)
    if " at 0x" in joined:  # Python's "Exception ignored in: <function f at 0x7f...>", say
        joined = without_addresses(joined)
        lines = joined.split("\n") if len(joined.split("\n")) == len(lines) else [without_addresses(line) for line in lines]
    # ASCII (the common case) is looked through for ESC and CR at memchr's speed; the C1 range only otherwise.
    escapes = ("\x1b" in joined or "\r" in joined) if joined.isascii() else _SLOW_PATH.search(joined) is not None
    if escapes or len(joined.splitlines()) != len(lines) or joined.endswith("\n"):
        return [plain_text(piece) for line in lines for piece in (line.splitlines() or [""])]
    plain = _CONTROL.sub("", joined)
    return (plain if plain.isascii() else _BIDI.sub(_escaped, plain)).split("\n")
