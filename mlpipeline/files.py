"""Small helpers every writer under outputs/ shares: the time stamp, atomic JSON, named errors."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator


def now_iso() -> str:
    """The current local time in ISO 8601 with its UTC offset, to the millisecond."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


@contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """Make an OSError raised inside name ``path`` (a failed write or flush names none)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """Write JSON to ``path`` through a temporary file and a rename, so readers never see half.

    ``durable=False`` skips the fsync, for files that are only ever a passing view.
    """
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
