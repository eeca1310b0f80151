"""What each script is (its sha256) and which versions it defines, learned from a child.

The daemon never imports a script: a child lists its versions, once per script content.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import os
from stat import S_ISREG
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlpipeline.executors.base import Executor
from mlpipeline.executors.protocol import LIST_VERSIONS, ChildRequest, ScriptError
from mlpipeline.queue.config import ConfigError
from mlpipeline.records.digest import file_sha256
from mlpipeline.records.files import write_json_atomic
from mlpipeline.records.lines import load_object
from mlpipeline.script_support.config_files import MAX_FILE_BYTES, UNREADABLE, version_fingerprint
from mlpipeline.script_support.related_files import stamps
from mlpipeline.script_support.versions import name_problem, shown_name


@dataclass
class ScriptListing:
    """A script's versions in run order, or why they could not be learned."""

    sha256: str
    names: List[str] = field(default_factory=list)
    missing: Dict[str, List[str]] = field(default_factory=dict)
    suffixes: Dict[str, str] = field(default_factory=dict)
    gpus: Dict[str, Any] = field(default_factory=dict)
    error: Optional[ScriptError] = None
    refused: Dict[str, str] = field(default_factory=dict)
    """Versions left out of ``names`` because their name cannot be carried (name_problem): why, by name."""
    gpu_memory: Dict[str, Any] = field(default_factory=dict)
    """Each version's ``gpu_memory`` parameter, as the script set it (checked where it is used)."""
    inputs: Dict[str, List[str]] = field(default_factory=dict)
    """The configuration files of each version made from them (add_config_files): part of its fingerprint."""
    globs: List[List[Any]] = field(default_factory=list)
    """[pattern, [files matched]] of each glob the script's import expanded: when one matches
    other files, the script is listed again."""
    invalid: Dict[str, str] = field(default_factory=dict)
    """Versions whose batch_size, epoc_count or model_dir_suffix cannot be (0, -1, "32", NaN,
    a list): why, by name; refused before they start, in test mode all at once."""
    slips: List[str] = field(default_factory=list)
    """What to say of parameters whose names are slips of those mlpipeline reads (``batchsize``)."""
    modules: List[List[Any]] = field(default_factory=list)
    """[path, mtime in ns, size, sha256] of each module the script imported from beside it:
    when one's content changes, the script is listed again (a module may add versions)."""

    def still_current(self) -> bool:
        """Whether every glob the listing was made with matches what it matched then, and
        every module it imported holds what it held (its stamp, else its content, says so)."""
        now = stamps([module[0] for module in self.modules])
        for (path, mtime, size), (_, was_mtime, was_size, sha256) in zip(now, self.modules):
            if (mtime, size) != (was_mtime, was_size) and file_sha256(path) != sha256:
                return False
        return all(sorted(glob.glob(pattern)) == matched for pattern, matched in self.globs)


def _well_formed(listing: ScriptListing) -> bool:
    """Whether a listing read back from disk has the shapes a listing has (any bytes may be there)."""
    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    return (
        isinstance(listing.sha256, str)
        and strings(listing.names)
        and all(isinstance(table, dict) for table in (listing.missing, listing.suffixes, listing.gpus, listing.gpu_memory, listing.refused, listing.inputs, listing.invalid))
        and all(isinstance(why, str) for why in listing.invalid.values())
        and all(strings(files) for files in listing.inputs.values())
        and isinstance(listing.globs, list)
        and all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and strings(item[1]) for item in listing.globs)
        and strings(listing.slips)
        and isinstance(listing.modules, list)
        and all(
            isinstance(item, list) and len(item) == 4 and isinstance(item[0], str) and all(type(n) is int for n in item[1:3])
            and isinstance(item[3], str)
            for item in listing.modules
        )
    )


def refused_message(label: str, name: str, problem: str) -> str:
    """What is said of the version ``name`` of script ``label`` refused for ``problem``."""
    return f"{label}: version {shown_name(name)} is refused: its name {problem}; rename it in the script"


def script_name_message(label: str, problem: str) -> str:
    """What is said of a script whose own name (``label``) is refused for ``problem``."""
    return f"script {shown_name(label)} is refused: its file name {problem}; rename the file"


def _refuse_names(listing: ScriptListing) -> ScriptListing:
    """``listing`` with the versions whose names name_problem refuses moved to ``refused``:
    none of them reaches a log line, a journal record or a child's environment."""
    names: List[str] = []
    for name in listing.names:
        problem = name_problem(name) if isinstance(name, str) and name else "is not a non-empty string"
        if problem is None:
            names.append(name)
        else:
            listing.refused[name if isinstance(name, str) else repr(name)] = problem
    if listing.refused:
        listing.names = names
        for kept in (listing.missing, listing.suffixes, listing.gpus, listing.gpu_memory):
            for name in listing.refused:
                kept.pop(name, None)
    return listing


def unknown_versions(
    label: str, entry_lines: Sequence[Tuple[str, Optional[int]]], listing: ScriptListing, file: str
) -> List[ConfigError]:
    """A queue line of ``file`` naming a version the script ``label`` does not have, each."""
    known = ", ".join(listing.names) or "none"
    return [
        ConfigError(file, f"{label} has no version '{version}' (its versions: {known})", line)
        for version, line in entry_lines
        if version and version not in listing.names
    ]


def check_named_versions(scripts: Sequence[Any], catalog: "ScriptCatalog", file: str) -> None:
    """At start: a ConfigError when a line of ``file`` names a version its script does not
    have. Only scripts with such lines are listed now (their listing is kept for the run); a
    script that fails to import is left to its run, which records why."""
    fingerprints = Fingerprints()
    errors: List[ConfigError] = []
    for script in scripts:
        if not any(version for version, _ in script.entry_lines):
            continue
        try:
            sha256 = fingerprints.sha256(script.path)
        except OSError:
            continue
        listing = catalog.listing(script.path, script.label, sha256)
        if listing is not None and listing.error is None:
            errors.extend(unknown_versions(script.label, script.entry_lines, listing, file))
    if errors:
        raise combined(errors)


def combined(errors: Sequence[ConfigError]) -> ConfigError:
    """One ConfigError at the first error's line, naming every error in order."""
    first = errors[0]
    return ConfigError(first.file, first.message + "".join(f"; and {error}" for error in errors[1:]), first.line)


class Fingerprints:
    """sha256 of script bytes, hashed again only when a file's stat changes.

    The stat is a cache key, never the verdict: touching a file rehashes it to the same sha256.
    """

    def __init__(self) -> None:
        self._cache: Dict[str, Tuple[tuple, str]] = {}

    def sha256(self, path: Path, limit: Optional[int] = None) -> str:
        """OSError for a path that is no regular file (a FIFO would block the read) or larger
        than ``limit``."""
        stat = os.stat(path)
        if not S_ISREG(stat.st_mode):
            raise OSError(errno.EINVAL, "no regular file", str(path))
        if limit is not None and stat.st_size > limit:
            raise OSError(errno.EFBIG, "too large", str(path))
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        cached = self._cache.get(str(path))
        if cached is not None and cached[0] == key:
            return cached[1]
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        self._cache[str(path)] = (key, digest)
        return digest

    def of_versions(self, listing: ScriptListing) -> "VersionFingerprints":
        """The fingerprint of each version of ``listing``, as the files are now."""
        return VersionFingerprints(listing, self)


class VersionFingerprints:
    """What each version of one listing is, for the journal: its script's sha256, combined for
    a version made from configuration files with theirs (read now), so that editing one of
    them reruns that version as editing the script reruns all."""

    def __init__(self, listing: ScriptListing, fingerprints: Fingerprints) -> None:
        self.script_sha256 = listing.sha256
        self._inputs = listing.inputs
        self._fingerprints = fingerprints

    def __call__(self, name: str) -> str:
        files = self._inputs.get(name)
        if not files:
            return self.script_sha256
        digests = []
        for path in files:
            try:
                digests.append(self._fingerprints.sha256(Path(path), MAX_FILE_BYTES))
            except OSError:
                digests.append(UNREADABLE)  # its run says why, naming the file
        return version_fingerprint(self.script_sha256, digests)


class ListingStore:
    """Listings kept on disk by script sha256, so ``mlpipeline status`` need not import scripts.

    A listing depends on the script's bytes and, rarely, on modules it imports: the daemon
    only writes here and always lists afresh (``readable=False``); status only reads, as a view
    may be a little behind, and a look at the queue changes nothing on disk (``writable=False``).
    """

    def __init__(self, folder: Path, readable: bool, writable: bool) -> None:
        self.folder = folder
        self.readable = readable
        self.writable = writable

    def load(self, sha256: str) -> Optional[ScriptListing]:
        if not self.readable:
            return None
        try:
            data = load_object(self.folder / f"{sha256}.json")
            data["error"] = ScriptError.from_json(data.get("error"))
            listing = ScriptListing(**data)
        except (OSError, ValueError, TypeError):
            return None
        return listing if _well_formed(listing) else None

    def save(self, listing: ScriptListing) -> None:
        if not self.writable:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            data = asdict(replace(listing, error=None))
            data["error"] = None if listing.error is None else listing.error.to_json()
            write_json_atomic(self.folder / f"{listing.sha256}.json", data, durable=False)
        except OSError:
            pass  # a cache: the daemon's records do not depend on it


ListingLineSink = Callable[[str, str, List[str]], None]
"""Receives (script label, stream, line) for what a script prints while its versions are listed."""

ListingEventSink = Callable[[str, Dict[str, Any]], None]
"""Receives (script label, event) for what a script logs while its versions are listed."""


class ScriptCatalog:
    """Listings of scripts by content, each learned once from a child process."""

    def __init__(
        self,
        executor: Executor,
        on_lines: ListingLineSink,
        on_event: ListingEventSink,
        cancel: Callable[[], bool] = lambda: False,
        store: Optional[ListingStore] = None,
        timeout: Optional[float] = None,
        models_dir: Optional[Path] = None,
        warn: Optional[Callable[[str], None]] = None,
    ) -> None:
        """``warn`` hears of each version refused by its name as the script is listed; without
        it, the warning goes to ``on_event`` as a log message of the script."""
        self._executor = executor
        self._warn = warn
        self._timeout = timeout
        self._models_dir = str(models_dir) if models_dir is not None else None
        self._store = store
        self._on_lines = on_lines
        self._on_event = on_event
        self._cancel = cancel
        self._listings: Dict[Tuple[str, str], ScriptListing] = {}

    def config_paths(self) -> List[str]:
        """The configuration files of the versions listed so far, the folders their globs look
        in, and the modules the scripts imported from beside them: what a waiting daemon
        watches for a change besides the scripts."""
        paths: List[str] = []
        for listing in self._listings.values():
            for files in listing.inputs.values():
                paths.extend(files)
            for pattern, _ in listing.globs:
                folder = pattern
                while glob.has_magic(folder):
                    folder = os.path.dirname(folder)
                paths.append(folder)
            paths.extend(module[0] for module in listing.modules)
        return sorted(set(paths))

    def known(self, path: Path, sha256: str) -> Optional[ScriptListing]:
        """The listing already learned for this content, without starting a child."""
        return self._listings.get((str(path), sha256))

    def listing(self, path: Path, label: str, sha256: str) -> Optional[ScriptListing]:
        """The versions of the script at ``path`` whose content hashes to ``sha256``.

        None when ``cancel`` said stop (Ctrl-C) before the child ended.
        """
        cached = self._listings.get((str(path), sha256))
        if cached is not None and cached.still_current():
            return cached
        problem = name_problem(label)
        if problem is not None:
            # Not stored: the store goes by content, and the same content under a plain name is fine.
            refused = ScriptListing(sha256=sha256, error=ScriptError(message=script_name_message(label, problem), phase="import"))
            self._listings[(str(path), sha256)] = refused
            return refused
        if self._store is not None:
            stored = self._store.load(sha256)
            if stored is not None and stored.still_current():
                self._listings[(str(path), sha256)] = stored
                return stored
        request = ChildRequest(action=LIST_VERSIONS, script_path=str(path), script_label=label, models_dir=self._models_dir)
        for _ in range(2):
            outcome = self._executor.call(
                request,
                lambda stream, lines: self._on_lines(label, stream, lines),
                lambda event: self._on_event(label, event),
                self._cancel,
                timeout=self._timeout,
            )
            # Killed by a SIGKILL nobody here sent (kill -9, the out-of-memory killer) before it
            # wrote anything: asked once more before the script is called broken for the session.
            # A script that crashes its interpreter (SIGSEGV) would only do it again.
            if outcome.result or outcome.signal_name != "SIGKILL" or outcome.stop_signal is not None or outcome.timed_out:
                break
        if outcome.stop_signal is not None and not outcome.timed_out:
            return None  # cancelled (Ctrl-C): nothing learned
        result = outcome.result or {}
        if result.get("ok") and not outcome.timed_out:
            listing = _refuse_names(
                ScriptListing(
                    sha256=result["sha256"],
                    names=result["names"],
                    missing=result["missing"],
                    suffixes=result["suffixes"],
                    gpus=result["gpus"],
                    gpu_memory=result.get("gpu_memory", {}),
                    inputs=result.get("inputs", {}),
                    globs=result.get("globs", []),
                    invalid=result.get("invalid", {}),
                    refused=result.get("refused", {}),
                    modules=result.get("modules", []),
                    slips=result.get("slips", []),
                )
            )
            said = [refused_message(label, name, why) + " (skipped; the script's other versions run)" for name, why in listing.refused.items()]
            for message in said + listing.slips:
                if self._warn is not None:
                    self._warn(message)
                else:
                    self._on_event(label, {"type": "log", "level": "WARNING", "message": message})
        elif outcome.timed_out:
            error = ScriptError(
                message=f"{label}: listing its versions took longer than listing_timeout ({self._timeout:g} s), so its "
                "import was stopped; if it needs longer (data loaded at import), raise listing_timeout in mlp.config",
                phase="import",
            )
            listing = ScriptListing(sha256=sha256, error=error)
        else:
            error = ScriptError.from_json(result.get("error")) or ScriptError(
                message=f"{label}: the process listing its versions {outcome.exit_description} before it listed them",
                phase="import",
            )
            listing = ScriptListing(sha256=result.get("sha256", sha256), error=error)
        # Stored under the content the child actually read, which an edit may have changed.
        self._listings[(str(path), listing.sha256)] = listing
        if self._store is not None:
            self._store.save(listing)
        return listing
