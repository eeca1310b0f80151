"""Reading records back. Every file mlpipeline reads again (the journal, control requests,
results, metric histories, heartbeats, run records) is read through here: a bounded line or
a bounded file at a time, decoded strictly, so that no byte sequence in it (a line nested a
million deep, a 100 MB line without its newline, bytes that are not UTF-8) can crash a reader
or fill its memory. What does not decode to a JSON object is the caller's to skip with a warning
naming file and line."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

from mlpipeline.records.files import holds_lone_surrogate, regular_file_opener

LINE_LIMIT = 4 << 20
"""The longest line a record file may hold (4 MiB): the writers keep far below it, and a reader
holds at most this much of any line, however long the line on disk is."""
FILE_LIMIT = 4 << 20
"""The largest whole-file record (a heartbeat, run.json, a listing) that is read at all."""
_CHUNK = 1 << 20

_DECODER = json.JSONDecoder()
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
"""An escaped UTF-16 surrogate (``\\ud800``): json decodes one standing alone to a str that
cannot be written or printed as UTF-8. Where the bytes hold none, no string can hold one."""
Line = Tuple[int, Optional[bytes]]
"""A line's number in its file (from 1) and its bytes without the newline; None for a line
longer than the limit, whose bytes were not kept."""


class RecordError(ValueError):
    """A record that is not the JSON object it should be: its reason, without its content."""


def decode_object(data: bytes) -> Dict[str, Any]:
    """The JSON object ``data`` holds (surrounding white space allowed), or RecordError.

    Strict in what counts: one value, an object, valid UTF-8. Nesting too deep for the parser
    (RecursionError) and numbers too long to convert are refusals like any other.
    """
    try:
        text = data.decode("utf-8").strip()
        # raw_decode on the decoded line: json.loads' encoding detection, paid on every line
        # of a 100,000-event journal, is a quarter of reading it.
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise RecordError(_short_reason(exc)) from None
    if end != len(text):
        raise RecordError("more than one value on the line")
    if not isinstance(value, dict):
        raise RecordError(f"a JSON {_JSON_KINDS.get(type(value), 'value')}, not an object")
    if b"\\u" in data and SURROGATE_ESCAPE.search(data) and holds_lone_surrogate(value):  # "in" first: 10x cheaper
        raise RecordError("a string holds a lone UTF-16 surrogate (no text)")
    return value


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "true or false", type(None): "null"}


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    if isinstance(exc, MemoryError):
        return "too large to decode"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if "integer string conversion" in str(exc):  # Python's 4,300-digit limit
        return "a number of more than 4,300 digits"
    return "not JSON"


_BOM = b"\xef\xbb\xbf"


class LineSplitter:
    """Cuts bytes, fed in any pieces, into numbered lines; of a line longer than ``limit`` it
    keeps nothing (the line is reported once, as None) and drops the rest up to its newline."""

    def __init__(self, limit: int = LINE_LIMIT, first_number: int = 1) -> None:
        self.limit = limit
        self._next_number = first_number
        self._pending = bytearray()
        self._skipping = False  # inside a line already reported too long

    def feed(self, chunk: bytes) -> List[Line]:
        pieces = chunk.split(b"\n")
        rest = pieces.pop()
        lines: List[Line] = []
        for piece in pieces:
            if self._skipping:
                self._skipping = False
                continue
            if self._pending:
                piece = bytes(self._pending) + piece
                self._pending.clear()
            if self._next_number == 1 and piece.startswith(_BOM):
                piece = piece[len(_BOM) :]  # an editor's byte order mark, not part of the first record
            lines.append((self._next_number, piece if len(piece) <= self.limit else None))
            self._next_number += 1
        if not self._skipping:
            if len(self._pending) + len(rest) > self.limit:
                lines.append((self._next_number, None))
                self._next_number += 1
                self._pending.clear()
                self._skipping = True
            else:
                self._pending += rest
        return lines

    @property
    def has_partial(self) -> bool:
        """Whether a line has begun without its newline yet (one already reported counts not)."""
        return bool(self._pending)

    def abandon_partial(self) -> Optional[int]:
        """Give up the line begun (cut off by a crash, not to be finished): its number, and
        everything up to its newline, whenever that comes, is dropped. None when none begun."""
        if not self._pending:
            return None
        number = self._next_number
        self._next_number += 1
        self._pending.clear()
        self._skipping = True
        return number


def iter_lines(handle: BinaryIO, limit: int = LINE_LIMIT) -> Iterator[Line]:
    """The whole lines of ``handle`` from where it stands, numbered from 1; a last line without
    its newline (a writer's append in progress, or a crash's) is left out."""
    splitter = LineSplitter(limit)
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        yield from splitter.feed(chunk)


def read_objects(path: Path, limit: int = LINE_LIMIT) -> Iterator[Tuple[int, Any]]:
    """Each whole line of ``path`` as (number, the JSON object, or the RecordError of a line
    that is none). A missing file yields nothing; any other OSError (no regular file, say) is
    raised."""
    try:
        handle = open(path, "rb", opener=regular_file_opener)
    except FileNotFoundError:
        return
    with handle:
        for number, data in iter_lines(handle, limit):
            if data is None:
                yield number, RecordError(f"longer than {limit >> 20} MiB")
            elif data.strip():
                try:
                    yield number, decode_object(data)
                except RecordError as exc:
                    yield number, exc


def load_object(path: Path, limit: int = FILE_LIMIT) -> Dict[str, Any]:
    """The JSON object that the whole file ``path`` holds; RecordError for anything else (a file
    over ``limit`` is not read). OSError as opening or reading raises it."""
    with open(path, "rb", opener=regular_file_opener) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RecordError(f"larger than {limit >> 20} MiB")
    return decode_object(data[len(_BOM) :] if data.startswith(_BOM) else data)


def read_object(path: Path, limit: int = FILE_LIMIT) -> Optional[Dict[str, Any]]:
    """:func:`load_object`, or None where the file is missing, unreadable or not an object."""
    try:
        return load_object(path, limit)
    except (OSError, RecordError):
        return None


class TailRead:
    """What one read of a followed file brought: its new whole lines, and whether the file was
    ``deleted``, ``replaced`` or ``cut short`` since the last read (then nothing more was read:
    the follower starts over from the new file's beginning on the next read). A plain class:
    every child imports this module, and dataclasses would cost each about 10 ms."""

    def __init__(self, lines: Optional[List[Line]] = None, changed: Optional[str] = None) -> None:
        self.lines: List[Line] = [] if lines is None else lines
        self.changed = changed


class FileTail:
    """Follows a file that only grows: each read brings the lines appended since the last, and
    only those bytes are read. A line still being written is held (at most ``limit`` of it)
    and completed by a later read."""

    def __init__(self, path: Path, limit: int = LINE_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._identity: Optional[Tuple[int, int]] = None
        self._offset = 0
        self._splitter = LineSplitter(limit)

    @property
    def offset(self) -> int:
        """How many bytes of the current file have been read."""
        return self._offset

    @property
    def splitter(self) -> LineSplitter:
        return self._splitter

    @property
    def whole_lines_offset(self) -> int:
        """Where the lines read so far end: the offset less a line still being written."""
        return self._offset - len(self._splitter._pending)

    def skip_to(self, offset: int) -> None:
        """Start at ``offset`` (the end of a line) in the file as it is now, not at its
        beginning: what an earlier reader already took is not read again."""
        self._start_over()
        self._offset = offset

    def read_new(self) -> TailRead:
        try:
            handle = open(self.path, "rb", opener=regular_file_opener)
        except FileNotFoundError:
            if self._identity is None:
                return TailRead()
            self._start_over()
            return TailRead(changed="deleted")
        with handle:
            status = os.fstat(handle.fileno())
            identity = (status.st_dev, status.st_ino)
            if self._identity is None and status.st_size < self._offset:
                self._offset = 0  # skipped past the end of a file that is not the one noted
            if self._identity is not None and (identity != self._identity or status.st_size < self._offset):
                changed = "cut short" if identity == self._identity else "replaced"
                self._start_over()
                return TailRead(changed=changed)
            self._identity = identity
            handle.seek(self._offset)
            lines: List[Line] = []
            # Only what was there when this read began: a writer that keeps appending does
            # not keep this reader here.
            remaining = status.st_size - self._offset
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                self._offset += len(chunk)
                lines.extend(self._splitter.feed(chunk))
        return TailRead(lines)

    def _start_over(self) -> None:
        self._identity = None
        self._offset = 0
        self._splitter = LineSplitter(self.limit)
