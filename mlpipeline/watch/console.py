"""What a person watching the terminal sees. Rich on a terminal, plain lines otherwise."""
from __future__ import annotations

import errno
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mlpipeline.records.states import state_words
from mlpipeline.records.text import one_line, plain_lines, visible_lines

PLAIN_PROGRESS_INTERVAL_S = 10.0
"""Without a terminal, at most one progress line per version per this many seconds."""

_STATE_STYLE = {
    "finished": "green",
    "cancelled": "yellow",
    "running": "cyan",
    "waiting": "blue",
    "stale": "magenta",
    "broken": "bold red",
    "passed": "green",
    "failed": "bold red",
    "interrupted": "yellow",
    "timed_out": "red",
    "skipped": "dim",
    "paused": "blue",
    "stopped": "yellow",
}


def silence_stdout() -> None:
    """Point standard output at /dev/null, so that what Python flushes at exit cannot fail
    (a failed flush at exit is a traceback and exit status 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's own ends the program (SystemExit(1)): a daemon whose reader went away (`| tee`
        # that got the same Ctrl-C, `| head`) would leave its versions unrecorded. Raised as
        # the OSError it is, ConsoleView goes on without the console.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def make_console() -> Console:
    """The one Console of a command; rich leaves out colour and cursor codes when not on a terminal."""
    # emoji off: a script or version named "a:fire:" prints as written, not as rich's emoji.
    return _Console(highlight=False, soft_wrap=True, emoji=False)


class ConsoleView:
    """Lines for version starts and ends, warnings, errors and the closing summary."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._bars: Optional[Progress] = None
        self._tasks: Dict[str, TaskID] = {}
        self._plain_shown: Dict[str, float] = {}
        self._lost = False

    # -- the terminal, which may go away -----------------------------------------------------

    def _print(self, *objects: Any) -> None:
        if self._lost:
            return
        # A name, reason or value from a script never drives the terminal: its control
        # characters are shown as escapes (tables' cells are made one line where they are built).
        objects = tuple(visible_lines(item) if isinstance(item, str) else item for item in objects)
        try:
            self.console.print(*objects)
        except OSError as exc:
            self._output_lost(exc.strerror or str(exc))

    def _write(self, text: str) -> None:
        if self._lost:
            return
        try:
            self.console.file.write(text)
            self.console.file.flush()
        except OSError as exc:
            self._output_lost(exc.strerror or str(exc))

    def lose_output(self, reason: str) -> None:
        """Standard output cannot be written (``reason``): go on without it, and say so once."""
        if not self._lost:
            self._output_lost(reason)

    def _output_lost(self, reason: str) -> None:
        """The terminal closed (SIGHUP's EIO), or stdout is a full disk or a closed pipe: the
        queue goes on without a console. The log has everything; stderr says so, if it can."""
        self._lost = True
        try:
            sys.stderr.write(f"mlpipeline: the console cannot be written ({reason}); going on without it\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        silence_stdout()
        self.console.file = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the console

    @property
    def output_lost(self) -> bool:
        """Whether something meant for standard output could not be written: a command whose
        output is its purpose (status, compare) then ends with 1."""
        return self._lost

    def write_raw(self, text: str) -> None:
        """``text`` to standard output as it is (JSON, CSV, a table for a program)."""
        if self._lost:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as exc:
            self._output_lost(exc.strerror or str(exc))

    def info(self, message: str) -> None:
        self._print(escape(message))

    def warning(self, message: str) -> None:
        self._print(f"[yellow]warning:[/] {escape(message)}")

    def error(self, message: str) -> None:
        self._print(f"[bold red]error:[/] {escape(message)}")

    def child_line(self, source: str, line: str) -> None:
        self.child_lines(source, [line])

    def child_lines(self, source: str, lines: Sequence[str]) -> None:
        """Lines a version printed, as ``source | line``. Without a terminal, written as they
        are in one write: rich's rendering of each line cost more than the version's print."""
        if not lines:
            return
        if self.console.is_terminal:
            head = f"[dim]{escape(source)} |[/] "
            self._print("\n".join(head + escape(line) for line in plain_lines(lines)))
        else:
            head = f"{source} | "
            self._write("".join(f"{head}{line}\n" for line in plain_lines(lines)))

    def block(self, text: str) -> None:
        """A multi-line text such as a traceback, as it is."""
        self._print(escape(text.rstrip("\n")))

    def version_started(self, label: str, detail: str = "") -> None:
        extra = f" [dim]({escape(detail)})[/]" if detail else ""
        self._print(f"[bold]▶ {escape(label)}[/]{extra}")

    def version_ended(self, label: str, state: str, duration_s: float, reason: Optional[str] = None, last: str = "") -> None:
        """``■ net.py:a finished in 12.30 s (step 200 loss=0.0123)``: ``last``, its latest report."""
        style = _STATE_STYLE.get(state, "")
        text = f"[{style}]{state_words(state)}[/]" if style else state_words(state)
        after = f" [dim]({escape(last)})[/]" if last else ""
        self._print(f"[bold]■ {escape(label)}[/] {text} in {duration_s:.2f} s{after}")
        if reason:
            self._print(f"  {escape(reason)}")

    def progress(self, label: str, step: Any, total: Any, metrics: Dict[str, Any]) -> None:
        """A version's ``report()``: its bar on a terminal, else a plain line now and then."""
        if self._lost:
            return
        if not self.console.is_terminal:
            now = time.monotonic()
            with self._lock:
                if now - self._plain_shown.get(label, -PLAIN_PROGRESS_INTERVAL_S) < PLAIN_PROGRESS_INTERVAL_S:
                    return
                self._plain_shown[label] = now
            self._print(f"{escape(label)} {escape(describe_report(step, total, metrics))}")
            return
        text = describe_report(None, None, metrics)
        steps = {"completed": step} if isinstance(step, (int, float)) else {}
        if isinstance(total, (int, float)):
            steps["total"] = total
        with self._lock:
            if self._bars is None:
                self._bars = Progress(
                    TextColumn("{task.description}", markup=False),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TextColumn("eta"),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[metrics]}", markup=False),
                    console=self.console,
                    transient=True,
                )
            if label not in self._tasks:
                if not self._tasks:
                    try:
                        self._bars.start()
                    except OSError as exc:
                        self._output_lost(exc.strerror or str(exc))
                        return
                self._tasks[label] = self._bars.add_task(label, total=None, metrics="")
            self._bars.update(self._tasks[label], metrics=text, **steps)

    def progress_ended(self, label: str) -> None:
        """The version's bar goes (the last bar takes the live display with it)."""
        with self._lock:
            self._plain_shown.pop(label, None)
            task = self._tasks.pop(label, None)
            if task is not None and self._bars is not None:
                self._bars.remove_task(task)
                if not self._tasks:
                    try:
                        self._bars.stop()
                    except OSError as exc:
                        self._output_lost(exc.strerror or str(exc))

    def queue_counts(self, counts: Dict[str, int], unlisted: int = 0) -> None:
        """``queue: 3 finished, 1 running, 4 pending`` after each version's end."""
        parts = [f"{n} {state}" for state, n in counts.items() if n]
        if unlisted:
            parts.append(f"{unlisted} script{'s' if unlisted > 1 else ''} not listed yet (counted once imported)")
        self._print(f"[dim]queue: {escape(', '.join(parts) or 'empty')}[/]")

    def status_table(self, rows: Sequence[Tuple[str, str, str, str, str]], counts: Dict[str, int]) -> None:
        """``mlpipeline status``: (version, state, duration, metrics, detail) rows, then the counts.

        A rich table on a terminal; aligned plain columns otherwise, for grep and awk.
        """
        headers = ("VERSION", "STATE", "DURATION", "METRICS", "DETAIL")
        ordered = [tuple(one_line(cell) for cell in row) for row in rows]
        footer = ", ".join(f"{n} {state_words(state)}" for state, n in counts.items()) or "the queue is empty"
        if self.console.is_terminal:
            table = Table(show_edge=False, pad_edge=False)
            for header in headers:
                table.add_column(header.lower(), justify="right" if header == "DURATION" else "left")
            for label, state, duration, metrics, detail in ordered:
                style = _STATE_STYLE.get(state, "")
                shown = f"[{style}]{escape(state)}[/]" if style else escape(state)
                table.add_row(escape(label), shown, duration, escape(metrics), escape(detail))
            self._print(table)
            self._print(escape(footer))
            return
        widths = [max([len(header)] + [len(row[i]) for row in ordered]) for i, header in enumerate(headers[:-1])]
        lines = []
        for row in [headers, *ordered]:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]
            lines.append("  ".join(cells).rstrip())
        lines.append(footer)
        # Not a terminal: plain text, written at once to the console's file; rich's per-line
        # rendering would cost a second for 30,000 rows and add nothing without a terminal.
        self._write("\n".join(lines) + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table of text cells: rich on a terminal it fits, aligned plain columns otherwise
        (a table wider than the terminal is not squeezed into illegible columns). A column
        whose every cell reads as a number is aligned right."""
        headers = [one_line(header) for header in headers]
        rows = [[one_line(cell) for cell in row] for row in rows]
        numeric = [all(_is_number(row[i]) or not row[i] for row in rows) and any(row[i] for row in rows) for i in range(len(headers))]
        widths = [max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)]
        if self.console.is_terminal and sum(widths) + 3 * len(widths) <= self.console.width:
            table = Table(show_edge=False, pad_edge=False)
            for header, right in zip(headers, numeric):
                table.add_column(escape(header), justify="right" if right else "left", no_wrap=True)
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            self._print(table)
            return
        lines = []
        for row in [list(headers), *rows]:
            cells = [cell.rjust(width) if right else cell.ljust(width) for cell, width, right in zip(row, widths, numeric)]
            lines.append("  ".join(cells).rstrip())
        self._write("\n".join(lines) + "\n")

    def summary(self, title: str, rows: Sequence[Tuple[str, str, float]], footer: List[str]) -> None:
        """A table of (script:version, state, seconds), then the footer lines."""
        if rows:
            table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
            table.add_column("version")
            table.add_column("state")
            table.add_column("seconds", justify="right")
            for label, state, seconds in rows:
                style = _STATE_STYLE.get(state, "")
                table.add_row(escape(label), f"[{style}]{state}[/]" if style else state, f"{seconds:.2f}")
            self._print(table)
        for line in footer:
            self._print(escape(line))


def describe_report(step: Any, total: Any, metrics: Dict[str, Any]) -> str:
    """``step 40/100 loss=0.0123`` from what ``Model.report()`` sent."""
    parts = []
    if step is not None:
        parts.append(f"step {step}" if total is None else f"step {step}/{total}")
    for key, value in metrics.items():
        parts.append(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={_shown(value)}")
    return one_line(" ".join(parts))


SHOWN_CHARS = 40
"""The most of a value that is no number (a list, a dict, a long text) a report line shows."""


def _shown(value: Any) -> str:
    try:
        text = str(value)
    except (RecursionError, ValueError):  # nested past the interpreter's depth; an int too long to print
        return type(value).__name__
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
