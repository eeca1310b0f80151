"""SHA-256 of bytes, as a version's child needs it at its start (the script it imported).

The standard library's own SHA-256 module loads in about a millisecond; hashlib first loads
OpenSSL, 4 to 6 ms of every child started without a preload. hashlib stays the way where that
module is not built."""
from __future__ import annotations

from typing import Optional

from mlpipeline.records.files import regular_file_opener

try:
    from _sha256 import sha256 as _sha256  # Python 3.9 to 3.11
except ImportError:  # pragma: no cover - the interpreter's build decides
    try:
        from _sha2 import sha256 as _sha256  # type: ignore[no-redef]  # Python 3.12 on
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[no-redef]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits, as hashlib gives it."""
    return _sha256(data).hexdigest()


def file_sha256(path: str) -> Optional[str]:
    """The SHA-256 of the file at ``path``; None when it is gone, no regular file (a FIFO would
    block the read), or a path no file can have (a NUL in one read back from a record)."""
    try:
        with open(path, "rb", opener=regular_file_opener) as handle:
            return sha256_hex(handle.read())
    except (OSError, ValueError):
        return None
