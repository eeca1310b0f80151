"""From a queue file to the scripts to run, in order; re-read before every dispatch."""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from mlpipeline.queue.catalog import script_name_message
from mlpipeline.queue.config import ConfigError, QueueConfig, QueueEntry, missing_queue_message, parse_queue_config
from mlpipeline.queue.config_files import CONFIG_LIMIT, config_text, read_config_bytes
from mlpipeline.records.files import regular_file_opener
from mlpipeline.script_support.versions import name_problem

SETTLE_S = 0.5
"""A changed queue file is used once it has not changed for this long: an editor, a copy or a
sync tool may be half-way through writing it, and a half-written file can still parse."""

MAX_SETTLE_S = 5.0
"""A file that keeps changing is used as it is after this long (if it parses)."""


@dataclass(frozen=True)
class QueuedScript:
    """A script in the queue and which of its versions the queue asks for."""

    label: str
    path: Path
    only: Optional[Tuple[str, ...]] = None
    excluded: FrozenSet[str] = frozenset()
    entry_lines: Tuple[Tuple[str, Optional[int]], ...] = ()

    def wants(self, version: str) -> bool:
        return version not in self.excluded and (self.only is None or version in self.only)


def outside_models_dir(path: Path, models_dir: Path, real_dirs: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Where the script at ``path`` really is, when a link takes it outside ``models_dir``; else None.

    ``real_dirs`` caches folders' real paths for one pass over the queue: with it, a script
    that is no link costs one lstat, however many scripts share its folder.
    """
    cache: Dict[str, str] = {} if real_dirs is None else real_dirs
    folder, name = os.path.split(os.path.abspath(path))
    if folder not in cache:
        cache[folder] = os.path.realpath(folder)
    real = os.path.realpath(path) if os.path.islink(path) else os.path.join(cache[folder], name)
    key = os.fspath(models_dir)
    if key not in cache:
        cache[key] = os.path.realpath(models_dir)
    root = cache[key]
    # Both are real paths, normalised: a prefix test is exact (and cheaper than commonpath).
    return None if real == root or real.startswith(root.rstrip(os.sep) + os.sep) else real


def discover_scripts(models_dir: Path, outputs_dir: Path) -> List[str]:
    """Every ``*.py`` under models_dir, outputs and hidden folders excluded, sorted by path."""
    found = []
    for folder, subfolders, files in os.walk(models_dir):
        here = Path(folder)
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and name != "__pycache__" and os.path.realpath(here / name) != str(outputs_dir)  # realpath: a link that loops is no error
        ]
        found.extend((here / name).relative_to(models_dir).as_posix() for name in files if name.endswith(".py"))
    return sorted(found)


def resolve_queue(config: QueueConfig, models_dir: Path, outputs_dir: Path) -> Tuple[List[QueuedScript], List[str]]:
    """The scripts ``config`` queues, in queue order, and warnings about listed scripts that are missing."""
    warnings = []
    if config.use_blacklist:
        excluded_scripts = {entry.script for entry in config.blacklist if entry.version is None}
        excluded_versions: Dict[str, set] = {}
        for entry in config.blacklist:
            if entry.version is not None:
                excluded_versions.setdefault(entry.script, set()).add(entry.version)
        scripts = []
        for label in discover_scripts(models_dir, outputs_dir):
            problem = name_problem(label)
            if problem is not None:
                # As it is, its name would go into log lines and the console, and could forge a line.
                warnings.append(f"{models_dir}: {script_name_message(label, problem)}; skipped")
            elif label not in excluded_scripts:
                scripts.append(QueuedScript(label=label, path=models_dir / label, excluded=frozenset(excluded_versions.get(label, ()))))
        return scripts, warnings
    grouped: Dict[str, List[QueueEntry]] = {}
    for entry in config.whitelist:
        grouped.setdefault(entry.script, []).append(entry)
    scripts = []
    for label, entries in grouped.items():
        path = models_dir / label
        if not path.is_file():
            line = entries[0].line
            where = config.file if line is None else f"{config.file}:{line}"
            warnings.append(f"{where}: {label} {not_a_script(label, models_dir)}; skipped")
            continue
        whole = any(entry.version is None for entry in entries)
        only = None if whole else tuple(dict.fromkeys(entry.version for entry in entries))
        lines = tuple((entry.version or "", entry.line) for entry in entries)
        scripts.append(QueuedScript(label=label, path=path, only=only, entry_lines=lines))
    return scripts, warnings


def restrict(scripts: Sequence[QueuedScript], only: Sequence[QueueEntry]) -> List[QueuedScript]:
    """Keep what ``--only`` names: whole scripts, or single versions of them."""
    if not only:
        return list(scripts)
    kept = []
    for script in scripts:
        entries = [entry for entry in only if entry.script == script.label]
        if not entries:
            continue
        if any(entry.version is None for entry in entries):
            kept.append(script)
            continue
        versions = tuple(entry.version for entry in entries if script.wants(entry.version))  # type: ignore[arg-type]
        kept.append(QueuedScript(script.label, script.path, versions, script.excluded, script.entry_lines))
    return kept


class QueueFile:
    """A queue file re-read before every dispatch.

    While the queue runs, a file that does not parse (an editor half-way through a save)
    costs one warning, and the last good content stays in force until it parses again.
    """

    def __init__(
        self,
        path: Path,
        file: str,
        models_dir: Path,
        outputs_dir: Path,
        warn: Callable[[str], None],
        only: Sequence[QueueEntry] = (),
    ) -> None:
        self.path = path
        self.file = file
        self.models_dir = models_dir
        self.outputs_dir = outputs_dir
        self._warn = warn
        self._only = only
        self._text: Optional[bytes] = None
        self._config: Optional[QueueConfig] = None
        self._warned: set = set()
        self._last_look: Optional[bytes] = None

    def load(self) -> None:
        """The first read: any problem is a ConfigError, as at start nothing is in force yet."""
        try:
            data = read_config_bytes(self.path)
        except FileNotFoundError:
            raise ConfigError(self.file, missing_queue_message(self.path)) from None
        except OSError as exc:
            raise ConfigError(self.file, f"cannot be read ({exc.strerror or exc})") from None
        self._config = self._parse(data)
        self._text = data
        if not self._config.use_blacklist:
            # At start a script the queue names and that is not there is a mistake to fix
            # first; once the queue runs, an edit that names one costs a warning.
            named = {entry.script for entry in self._only}
            missing = list(
                {
                    entry.script: entry
                    for entry in self._config.whitelist
                    if (not named or entry.script in named) and not (self.models_dir / entry.script).is_file()
                }.values()
            )
            if missing:
                more = f" (nor do {', '.join(entry.script for entry in missing[1:])})" if len(missing) > 1 else ""
                message = f"{missing[0].script} {not_a_script(missing[0].script, self.models_dir)}{more}"
                raise ConfigError(self.file, message, missing[0].line)
        if self._only:
            scripts, _ = resolve_queue(self._config, self.models_dir, self.outputs_dir)
            if not restrict(scripts, self._only):
                import difflib

                names = ", ".join(str(entry) for entry in self._only)
                close = difflib.get_close_matches(self._only[0].script, [script.label for script in scripts], n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError("--only", f"{names} matches nothing that {self.file} queues{hint}")

    def only_named(self) -> List[QueuedScript]:
        """The queued scripts whose versions --only names, with those versions as their entry
        lines (of no line: they are the command's), for the check that each exists."""
        named = []
        for script in self.current():
            versions = tuple((entry.version, None) for entry in self._only if entry.script == script.label and entry.version)
            if versions:
                named.append(replace(script, entry_lines=versions))
        return named

    def current(self) -> List[QueuedScript]:
        """The queue now: the file as it is, or the last good content when it does not parse."""
        try:
            data = self._settled()
        except OSError as exc:
            self._warn_once(f"{self.file}: cannot be read ({exc.strerror or exc}); the last good queue stays in force")
            data = self._text
        if data != self._text:
            try:
                self._config = self._parse(data)
                self._text = data
                self._warned.clear()
            except ConfigError as exc:
                self._warn_once(f"{exc}; the last good queue stays in force")
        assert self._config is not None, "load() first"
        scripts, warnings = resolve_queue(self._config, self.models_dir, self.outputs_dir)
        for warning in warnings:
            self._warn_once(warning)
        return restrict(scripts, self._only)

    def edited(self) -> bool:
        """Whether the file's bytes changed since the queue in force was read, or since the last
        time this was asked (a half-saved file is news once): one read, no parse."""
        try:
            data = self._look()[0]
        except OSError:
            return False
        changed = data != self._text and data != self._last_look
        self._last_look = data
        return changed

    def _settled(self) -> bytes:
        """The file's bytes, once a change has stopped for SETTLE_S (neither they nor the file's
        modification time changed)."""
        look = self._look()
        if look[0] == self._text:
            return look[0]
        deadline = time.monotonic() + MAX_SETTLE_S
        while time.monotonic() < deadline:
            time.sleep(SETTLE_S)
            again = self._look()
            if again == look:
                break
            look = again
        return look[0]

    def _look(self) -> Tuple[bytes, int]:
        with open(self.path, "rb", opener=regular_file_opener) as handle:
            return handle.read(CONFIG_LIMIT + 1), os.fstat(handle.fileno()).st_mtime_ns

    def discovered_scripts(self) -> List[str]:
        """Every script a queue could name: what the blacklist discovers under models_dir."""
        return discover_scripts(self.models_dir, self.outputs_dir)

    def _parse(self, data: Optional[bytes]) -> QueueConfig:
        text = config_text(data or b"", self.file)
        if not text.strip():
            # An editor truncates before it writes: an empty file is a save in progress, not a queue.
            raise ConfigError(self.file, "is empty; an empty queue is written as scripts = []")
        return parse_queue_config(text, self.file, self.models_dir)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._warn(message)


SCRIPTS_LOOKED_AT = 5000
"""The most files of models_dir compared with a misspelled script's name."""


def not_a_script(label: str, models_dir: Path) -> str:
    """What the path of ``label`` is instead of a script file: ``does not exist in ...; did you
    mean ...``, or what is there (a folder, a FIFO, a link that loops or leads nowhere)."""
    path = models_dir / label
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return f"does not exist in {models_dir}{did_you_mean(label, models_dir)}"
    if stat.S_ISLNK(mode):
        try:
            os.stat(path)
        except OSError as exc:
            return f"is a symbolic link in {models_dir} that cannot be followed ({exc.strerror or exc})"
        mode = os.stat(path).st_mode
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"is {kind} in {models_dir}, not a script file"


def did_you_mean(label: str, models_dir: Path) -> str:
    """``; did you mean 'quad.py'?`` for a script name close to one in ``models_dir``, else ''."""
    import difflib

    names: List[str] = []
    try:
        for folder, subfolders, files in os.walk(models_dir):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and name not in ("outputs", "__pycache__"))
            relative = os.path.relpath(folder, models_dir)
            names += [name if relative == "." else f"{relative}/{name}" for name in files if name.endswith(".py")]
            if len(names) >= SCRIPTS_LOOKED_AT:
                break
    except OSError:
        return ""
    close = difflib.get_close_matches(label, [name for name in names if name != label], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
