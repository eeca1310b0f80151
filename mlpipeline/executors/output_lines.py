"""A child's output cut into log lines, in bounded memory whatever it prints.

A line is cut at MAX_LINE_BYTES: its start is kept, with the count of what was left out. A
carriage return redraws the line (a progress bar): only the last redraw is kept, and one is
written as a line of its own at most every REDRAW_LOG_INTERVAL_S, so a bar that never ends
its line still shows in ``tail -f`` and never fills the daemon's memory.
"""
from __future__ import annotations

import time
from typing import Callable, List

MAX_LINE_BYTES = 64 * 1024
MAX_EVENT_BYTES = 1024 * 1024
REDRAW_LOG_INTERVAL_S = 10.0
READ_BYTES = 64 * 1024


class LineCutter:
    """Feeds on bytes, hands the lines each feed finished (as text) to ``emit``, all at once."""

    def __init__(self, emit: Callable[[List[str]], None], max_bytes: int = MAX_LINE_BYTES, redraws: bool = True) -> None:
        self._emit = emit
        self._max = max_bytes
        self._redraws = redraws
        self._line = bytearray()
        self._dropped = 0
        self._last_redraw = b""
        self._redraw_logged = time.monotonic()
        self._done: List[str] = []

    def feed(self, data: bytes) -> None:
        self._cut(data)
        self._hand_over()

    def close(self) -> None:
        """The stream ended: a last line without its newline is a line too."""
        if self._line or self._dropped or self._last_redraw:
            self._end_line()
        self._hand_over()

    def _hand_over(self) -> None:
        if self._done:
            done, self._done = self._done, []
            self._emit(done)

    def _cut(self, data: bytes) -> None:
        if self._redraws and b"\r" in data:
            self._cut_slowly(data)
            return
        # Ordinary lines, whole in this read: split and decoded at once, not line by line
        # (a loop that prints as fast as it can sends thousands of lines a read).
        start = 0
        if self._line or self._dropped or self._last_redraw:
            newline = data.find(b"\n")
            if newline < 0:
                self._take(data)
                return
            self._cut_slowly(data[: newline + 1])
            start = newline + 1
        end = data.rfind(b"\n")
        if end < start:
            self._take(data[start:])
            return
        body = data[start:end]
        if len(body) > self._max and max(map(len, body.split(b"\n"))) > self._max:
            self._cut_slowly(data[start:])
            return
        self._done.extend(body.decode("utf-8", errors="replace").split("\n"))
        self._take(data[end + 1 :])

    def _cut_slowly(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            newline = data.find(b"\n", position)
            carriage = data.find(b"\r", position) if self._redraws else -1
            ends = [index for index in (newline, carriage) if index >= 0]
            if not ends:
                self._take(data[position:])
                return
            end = min(ends)
            self._take(data[position:end])
            if end == newline:
                self._end_line()
            else:
                self._redraw()
            position = end + 1

    def _take(self, chunk: bytes) -> None:
        room = self._max - len(self._line)
        if room > 0:
            self._line += chunk[:room]
        self._dropped += max(len(chunk) - max(room, 0), 0)

    def _redraw(self) -> None:
        if self._line.strip():
            self._last_redraw = bytes(self._line)
            now = time.monotonic()
            if now - self._redraw_logged >= REDRAW_LOG_INTERVAL_S:
                self._redraw_logged = now
                self._done.append(self._text(self._last_redraw, self._dropped))
        self._line.clear()
        self._dropped = 0

    def _end_line(self) -> None:
        # "text\r\n" (or a bar's last redraw then "\n"): the redraw is the line.
        line = bytes(self._line) if self._line.strip() or not self._last_redraw else self._last_redraw
        self._done.append(self._text(line, self._dropped))
        self._line.clear()
        self._dropped = 0
        self._last_redraw = b""

    @staticmethod
    def _text(line: bytes, dropped: int) -> str:
        text = line.decode("utf-8", errors="replace")
        if dropped:
            text += f" [... {dropped} more bytes of this line not kept]"
        return text


class RecordCutter:
    """Feeds on bytes, hands each newline-ended record (a JSON event) to ``emit``; a record over
    MAX_EVENT_BYTES is dropped and its size told to ``oversized``."""

    def __init__(self, emit: Callable[[bytes], None], oversized: Callable[[int], None]) -> None:
        self._emit = emit
        self._oversized = oversized
        self._buffer = bytearray()
        self._dropping = 0

    def feed(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            newline = data.find(b"\n", position)
            end = len(data) if newline < 0 else newline
            if self._dropping:
                self._dropping += end - position
            else:
                self._buffer += data[position:end]
                if len(self._buffer) > MAX_EVENT_BYTES:
                    self._dropping = len(self._buffer)
                    self._buffer.clear()
            if newline < 0:
                return
            if self._dropping:
                self._oversized(self._dropping)
                self._dropping = 0
            else:
                self._emit(bytes(self._buffer))
                self._buffer.clear()
            position = newline + 1

    def close(self) -> None:
        """The stream ended: a record without its newline was cut short, and is no record."""
