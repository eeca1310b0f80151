"""What a person watching the terminal sees. Rich on a terminal, plain lines otherwise."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlpipeline.records import plain_text

_STATE_STYLE = {
    "finished": "green",
    "passed": "green",
    "failed": "bold red",
    "interrupted": "yellow",
    "timed_out": "red",
    "skipped": "dim",
}


def make_console() -> Console:
    """The one Console of a command; rich leaves out colour and cursor codes when not on a terminal."""
    return Console(highlight=False, soft_wrap=True)


class ConsoleView:
    """Lines for version starts and ends, warnings, errors and the closing summary."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def info(self, message: str) -> None:
        self.console.print(escape(message))

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}")

    def error(self, message: str) -> None:
        self.console.print(f"[bold red]error:[/] {escape(message)}")

    def child_line(self, source: str, line: str) -> None:
        self.console.print(f"[dim]{escape(source)} |[/] {escape(plain_text(line))}")

    def block(self, text: str) -> None:
        """A multi-line text such as a traceback, as it is."""
        self.console.print(escape(text.rstrip("\n")))

    def version_started(self, label: str, detail: str = "") -> None:
        extra = f" [dim]({escape(detail)})[/]" if detail else ""
        self.console.print(f"[bold]▶ {escape(label)}[/]{extra}")

    def version_ended(self, label: str, state: str, duration_s: float, reason: Optional[str] = None) -> None:
        style = _STATE_STYLE.get(state, "")
        text = f"[{style}]{state}[/]" if style else state
        self.console.print(f"[bold]■ {escape(label)}[/] {text} in {duration_s:.2f} s")
        if reason:
            self.console.print(f"  {escape(reason)}")

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
            self.console.print(table)
        for line in footer:
            self.console.print(escape(line))
