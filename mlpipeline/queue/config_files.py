"""The config files' names, their errors, and TOML read with the line of each mistake.

The ground both config.py (the files as mlpipeline reads them) and ini.py (the original
package's INI format) stand on.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mlpipeline.records.files import regular_file_opener

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

PROJECT_CONFIG = "mlp.config"
EXECUTION_QUEUE = "models.config"
TEST_QUEUE = "models_test.config"
CONFIG_LIMIT = 4 << 20
"""The largest config file read (4 MiB): a queue of 10,000 scripts is a few hundred KiB."""


class ConfigError(Exception):
    """A config file that cannot be used, with the file, line and key it is about."""

    def __init__(self, file: str, message: str, line: Optional[int] = None) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


def parse_toml_text(text: str, file: str) -> Dict[str, Any]:
    """Parse TOML, turning a syntax error into a ConfigError at its line."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(file, "not valid TOML: arrays or tables nested too deep") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
        line = int(match.group(1)) if match else None
        column = int(match.group(2)) if match else None
        if match is None and "(at end of document)" in message:  # a string or table cut off by the end
            line = len(text.rstrip("\n").split("\n"))
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        hint = _likely_slip(text, message, line, column)
        if hint is not None:
            message, line = hint
        raise ConfigError(file, f"not valid TOML: {message}", line) from None
    except ValueError:  # an integer past Python's 4,300 digits, which tomllib lets through
        long_number = re.search(r"\d{4300}", text)
        line = text.count("\n", 0, long_number.start()) + 1 if long_number else None
        raise ConfigError(file, "not valid TOML here: a number of more than 4,300 digits", line) from None


_BARE_WORD = re.compile(r"[A-Za-z0-9_.\-/:]+")
_VALUE_START = re.compile(r"[\"'0-9+\-\[{tfin]")
_TABLE_HEADER = re.compile(r"\s*\[[^\]=\"']*\]\s*(#.*)?$")


def _likely_slip(text: str, message: str, line: Optional[int], column: Optional[int]) -> Optional[Tuple[str, Optional[int]]]:
    """(a message naming the likely slip, the line it is on) for the TOML errors people make
    in these files: a missing comma, a list never closed, a name not quoted. None for others."""
    lines = text.splitlines()
    here = lines[line - 1][column - 1:] if line is not None and column is not None and line <= len(lines) else ""
    if message == "Invalid value":
        word = _BARE_WORD.match(here)
        if word and word.group() not in ("true", "false", "inf", "nan") and not word.group()[0].isdigit():
            return f'{word.group()} is not a TOML value: names are quoted, "{word.group()}"', line
        return None
    if message != "Unclosed array":
        return None
    opened = _open_bracket_line(text, line, column)
    if line is not None and here[:1] and _VALUE_START.match(here) and not (column == 1 and _TABLE_HEADER.match(here)):
        after = _previous_value_line(lines, line, column)
        if after is not None:
            number, value = after
            return f"a comma is likely missing after {value} on line {number}: the items of a list are separated by commas", number
    if opened is not None:
        where = f" before line {line}" if line is not None else ""
        return f"the list opened on line {opened} is never closed: a ']' is missing{where}", opened
    return None


def _previous_value_line(lines: List[str], line: int, column: int) -> Optional[Tuple[int, str]]:
    """The line and the text of the last item before (line, column), comments left out."""
    for number in range(line, 0, -1):
        text = lines[number - 1][: column - 1] if number == line else lines[number - 1]
        text = _without_comment(text).rstrip()
        if text:
            item = re.split(r"[\[,]\s*", text)[-1].strip() or text.strip()
            return number, item[-40:]
    return None


def _outside_strings(text: str) -> Iterator[Tuple[int, str]]:
    """(index, character) of each character of a TOML line outside its quoted strings."""
    quote = None
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        else:
            yield index, char


def _without_comment(text: str) -> str:
    return next((text[:index] for index, char in _outside_strings(text) if char == "#"), text)


def _open_bracket_line(text: str, line: Optional[int], column: Optional[int]) -> Optional[int]:
    """The line of the outermost '[' still open at (line, column), or at the end of ``text``."""
    stack: List[int] = []
    for number, content in enumerate(text.splitlines(), 1):
        if line is not None and number > line:
            break
        content = _without_comment(content)
        if line is not None and number == line and column is not None:
            content = content[: column - 1]
        for _, char in _outside_strings(content):
            if char == "[":
                stack.append(number)
            elif char == "]" and stack:
                stack.pop()
    return stack[0] if stack else None


def config_text(data: bytes, file: str) -> str:
    """A config file's bytes as text; a ConfigError naming ``file`` for bytes that cannot be a
    config file (not UTF-8, NUL bytes, larger than CONFIG_LIMIT)."""
    if len(data) > CONFIG_LIMIT:
        raise ConfigError(file, f"is larger than {CONFIG_LIMIT >> 20} MiB; not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, f"is not UTF-8 text (byte {exc.start})") from None
    # The byte order mark some Windows editors put first says only "UTF-8": no TOML or INI.
    return text[1:] if text.startswith("\ufeff") else text


def read_config_bytes(path: Path) -> bytes:
    """At most CONFIG_LIMIT + 1 bytes of ``path``: enough to tell that a file is too large."""
    with open(path, "rb", opener=regular_file_opener) as handle:
        return handle.read(CONFIG_LIMIT + 1)
