"""The config files' names, their errors, and TOML read with the line of each mistake.

The ground both config.py (the files as mlpipeline reads them) and ini.py (the original
package's INI format) stand on.
"""
from __future__ import annotations

import re
import sys
from typing import Any, Dict, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

PROJECT_CONFIG = "mlp.config"
EXECUTION_QUEUE = "models.config"
TEST_QUEUE = "models_test.config"


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
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        if match:
            message = message[: match.start()] + message[match.end():]
        raise ConfigError(file, f"not valid TOML: {message}", line) from None
