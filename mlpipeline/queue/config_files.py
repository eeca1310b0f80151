"""The config files' names, their errors, and TOML read with the line of each mistake.

The ground both config.py (the files as mlpipeline reads them) and ini.py (the original
package's INI format) stand on.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, Optional

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
        match = re.search(r"\s*\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        if match:
            message = message[: match.start()] + message[match.end():]
        raise ConfigError(file, f"not valid TOML: {message}", line) from None


def config_text(data: bytes, file: str) -> str:
    """A config file's bytes as text; a ConfigError naming ``file`` for bytes that cannot be a
    config file (not UTF-8, NUL bytes, larger than CONFIG_LIMIT)."""
    if len(data) > CONFIG_LIMIT:
        raise ConfigError(file, f"is larger than {CONFIG_LIMIT >> 20} MiB; not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, f"is not UTF-8 text (byte {exc.start})") from None
    return text


def read_config_bytes(path: Path) -> bytes:
    """At most CONFIG_LIMIT + 1 bytes of ``path``: enough to tell that a file is too large."""
    with open(path, "rb") as handle:
        return handle.read(CONFIG_LIMIT + 1)
