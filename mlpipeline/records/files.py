"""Small helpers every writer under outputs/ shares: the time stamp, strict and durable JSON,
named errors."""
from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional


class NotRegularFile(OSError):
    """A FIFO, socket or device where mlpipeline keeps a file (see :func:`regular_file_opener`)."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


def regular_file_opener(path: str, flags: int) -> int:
    """``os.open`` for ``open(..., opener=regular_file_opener)`` of a record or config file:
    anything but a regular file is refused at once with :class:`NotRegularFile`. A FIFO put in
    its place would block the open or the read for ever, a device feed a reader without end
    (/dev/zero) or swallow records (/dev/null)."""
    return _open_checked(path, flags, devices=False)


def appended_file_opener(path: str, flags: int) -> int:
    """:func:`regular_file_opener` for a file mlpipeline only appends to and never reads back
    (log-<host>, output-<host>): a device is taken too (/dev/null, /dev/full), a FIFO never."""
    return _open_checked(path, flags, devices=True)


def _open_checked(path: str, flags: int, devices: bool) -> int:
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing that no process reads
            raise NotRegularFile(path) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (devices and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)))):
            raise NotRegularFile(path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_bytes(path: Path, limit: Optional[int] = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit`` of them); OSError otherwise."""
    with open(path, "rb", opener=regular_file_opener) as handle:
        return handle.read(-1 if limit is None else limit)


def ends_with_newline(path: Path) -> bool:
    """Whether the file at ``path`` (not empty) ends its last line: else a crash cut it short."""
    with open(path, "rb", opener=regular_file_opener) as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


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


def finite(value: Any) -> Any:
    """``value`` as strict JSON in UTF-8 can hold it: every NaN and infinity as the string
    Python prints for it (``"nan"``, ``"inf"``, ``"-inf"``), an integer too long for Python
    to print (over 4,300 digits) as a string saying so, and a string holding a lone surrogate
    (a file name of undecodable bytes, by way of ``os.fsdecode``) with it escaped
    (``"img_\\udcff.png"``), as every reader of our records refuses such a string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return surrogates_escaped(value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _PRINTABLE_INT_BITS:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, dict):
        return {finite(key): finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return surrogates_escaped(str(value))  # what json's default=str makes of any other object


_SURROGATE = re.compile("[\ud800-\udfff]")


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a string in the decoded JSON ``value`` (a key or a value, at any depth) holds a
    lone surrogate. Walked without recursion: the value may be nested as deep as json allows."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


_PRINTABLE_INT_BITS = 14_000
"""Python refuses to print an integer of more than 4,300 digits (about 14,284 bits)."""


def surrogates_escaped(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``\\udcff``)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_NON_FINITE_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a (non-boolean) number: "nan", "inf" and "-inf" are
    how the records keep those; an integer too large for a float is infinite."""
    if isinstance(value, str):
        return _NON_FINITE_TEXT.get(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def json_text(value: Any, **options: Any) -> str:
    """``value`` as strict JSON: never the ``NaN``/``Infinity`` tokens other tools reject.

    Data from a child (its events, its result.json) can hold them; they are written as strings.
    """
    options.setdefault("default", str)
    try:
        text = json.dumps(value, allow_nan=False, **options)
    except ValueError:
        text = json.dumps(finite(value), allow_nan=False, **options)
    return _readable_back(text, value, lambda plain: json.dumps(plain, allow_nan=False, **options))


def _readable_back(text: str, value: Any, encode: Callable[[Any], str]) -> str:
    """``text``, the JSON of ``value``, or ``value`` made :func:`finite` and encoded again where
    ``text`` holds a lone surrogate (raw, or escaped), which no reader of ours takes back. A
    C1 control (U+0080 to U+009F: U+009B starts an escape code on some terminals), a line or
    paragraph separator (a line break to ``str.splitlines``) or a bidirectional control (which
    makes ``cat`` show the line reordered) is written as its escape; JSON escapes only C0
    itself."""
    if "\\ud" in text or not text.isascii():  # the rare text that may hold one
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = encode(finite(value))  # none left: finite escapes every string, str() of objects too
        if "\\ud" in text and holds_lone_surrogate(json.loads(text)):
            text = encode(finite(value))
        if not text.isascii():
            # Outside strings JSON is ASCII: each such character is in a string.
            return _UNSAFE_IN_TEXT.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text


BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""The bidirectional controls (U+202E and its kin), as a regex character class's body: they
make a terminal show text reordered, so that a name or value reads as another."""

_UNSAFE_IN_TEXT = re.compile(f"[\x7f-\x9f\u2028\u2029{BIDI_CONTROLS}]")


def json_encoder(**options: Any) -> Callable[[Any], str]:
    """:func:`json_text` with ``options`` bound once: the same strict JSON, for many values
    in a row (``status --json`` writes one object a version, for 100,000 versions)."""
    options.setdefault("default", str)
    encoder = json.JSONEncoder(allow_nan=False, **options)

    def encode(value: Any) -> str:
        try:
            text = encoder.encode(value)
        except ValueError:
            text = encoder.encode(finite(value))
        return _readable_back(text, value, encoder.encode)

    return encode


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable: until the folder itself is synced, a
    power cut can undo them even though the file's own data was synced."""
    try:
        handle = os.open(str(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a folder that cannot be opened (some network file systems) cannot be synced either
    try:
        os.fsync(handle)
    except OSError:
        pass  # not every file system syncs folders (EINVAL); there is nothing more to do then
    finally:
        os.close(handle)


def _temporary_beside(path: Path) -> "tuple[int, str]":
    """A new file in ``path``'s folder, with the mode the umask gives any new file (as the
    records appended to are), not tempfile.mkstemp's owner-only one: renamed into place, a
    run record teammates sharing the folder could not read. Without tempfile's import: every
    version's child writes its result through here."""
    while True:
        name = os.path.join(str(path.parent), f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), name
        except FileExistsError:
            continue


def write_bytes_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half.

    ``durable=False`` skips the fsyncs, for files that are only ever a passing view.
    """
    fd, tmp = _temporary_beside(path)
    try:
        with naming_file(path), os.fdopen(fd, "wb") as handle:  # a full disk's write names no file
            handle.write(data)
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
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any, durable: bool = True, for_people: bool = True) -> None:
    """Write ``data`` as strict JSON to ``path``, atomically (see :func:`write_bytes_atomic`).

    ``for_people=False`` writes it on one line, for files only programs read (a run's request
    and result, a pending record): Python's indenting encoder is several times slower than
    the one-line one, and the daemon writes such a file for every version."""
    text = json_text(data, indent=1) if for_people else json_text(data)
    write_bytes_atomic(path, text.encode("utf-8"), durable)


def remove_quietly(path: Path) -> None:
    """Remove ``path`` if it is there; a file that is already gone is no error."""
    try:
        path.unlink()
    except OSError:
        pass
