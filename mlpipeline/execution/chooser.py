"""The first step of a version's path: which version runs next, from the queue as it is now,
the scripts' listings and the journal. Each version runs at most once per session and content."""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import AbstractSet, Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, NamedTuple, Optional, Set, Tuple

from mlpipeline.execution.early_stopping import Standing
from mlpipeline.execution.halving import HalvingPlanner, JudgedOut
from mlpipeline.execution.plan import HistoryPolicy, PlannedRun, Start, choose_next, decide
from mlpipeline.execution.reporter import Reporter
from mlpipeline.executors.protocol import ScriptError
from mlpipeline.queue.catalog import Fingerprints, ScriptCatalog, ScriptListing, VersionFingerprints
from mlpipeline.queue.config import EXECUTION_QUEUE, EarlyStoppingSettings
from mlpipeline.queue.queue_file import QueuedScript, QueueFile, outside_models_dir
from mlpipeline.records.control import ControlRequest
from mlpipeline.records.journal import Journal
from mlpipeline.records.paths import OutputPaths
from mlpipeline.records.states import RunState

VersionKey = Tuple[str, str, str]
"""(script, version, sha256): one version at one content of its script."""


class VersionChooser:
    """Chooses the next version; owns what this session has handled and what waits for a retry."""

    def __init__(
        self,
        queue: QueueFile,
        catalog: ScriptCatalog,
        journal: Journal,
        policy: HistoryPolicy,
        paths: OutputPaths,
        busy_model_dirs: Callable[[], AbstractSet[str]],
        reporter: Reporter,
        stopping: Callable[[], bool],
        early_stopping: Optional[EarlyStoppingSettings] = None,
    ) -> None:
        self.queue = queue
        self.catalog = catalog
        self.fingerprints = Fingerprints()
        self._journal = journal
        self._policy = policy
        self._paths = paths
        self._busy_model_dirs = busy_model_dirs
        self._real_dirs: Dict[str, str] = {}  # folders' real paths, for one pass over the queue
        self._say = reporter
        self._stopping = stopping
        self._broken: List[Tuple[QueuedScript, ScriptListing]] = []
        self._handled: Set[VersionKey] = set()
        self._retries: List[PlannedRun] = []
        self._cancelled: List[ControlRequest] = []  # `mlpipeline cancel` during this session
        # Per listing (script, sha256): how many of its first versions this session handled,
        # each version's place, and the model_dir of each: so that a choice among 10,000
        # versions of a script does not walk the ones done, nor make 10,000 paths.
        self._handled_prefix: Dict[Tuple[str, str], Tuple[ScriptListing, int]] = {}
        self._places: Dict[Tuple[str, str], Tuple[ScriptListing, Dict[str, int]]] = {}
        self._names_by_dir: Dict[Tuple[str, str], Tuple[ScriptListing, Dict[str, List[str]]]] = {}
        # Early stopping: the halving of each script, read from the journal; the stops it
        # decided, for the loop to record; the scripts (by content) whose model cannot resume.
        self._halving = HalvingPlanner(early_stopping, journal, policy) if early_stopping is not None else None
        self._stops: List[JudgedOut] = []
        self._stops_taken: Set[Tuple[str, str, str, int]] = set()  # (script, version, fingerprint, rung)
        self._watched: Dict[Tuple[str, str], Tuple[int, bool]] = {}  # (journal lines read then, watched)
        self._halving_seen: Optional[Tuple[Any, ...]] = None  # what the last empty look at promotions saw
        self._shared_model_dirs: Dict[Tuple[Any, ...], bool] = {}  # by script, content and selection
        self._passing_over_busy = True  # versions whose model_dir a running version uses are passed over

    # -- the choice ------------------------------------------------------------------------

    def next(self, taken: Set[Tuple[str, str, Optional[str]]], cut_off: Set[Tuple[str, str]]) -> Optional[PlannedRun]:
        """The next version to start, or None. ``taken``: what any daemon claimed in this session;
        ``cut_off``: versions cut off in it (their daemon died), which this daemon resumes."""
        self._real_dirs = {}
        if self._retries:
            retry = self._retry(self._retries[0])
            if retry is not None:
                # Under early stopping an attempt goes on to the rung its run was heading to.
                return retry if self._halving is None else self._halving.first_run(retry, watched=self._is_watched(retry.script))
            self._retries.pop(0)  # the version is gone from its script: nothing to retry
        scripts = [self._without_cancelled(script) for script in self.queue.current()]
        handled = _Handled(self._handled, taken, cut_off)
        planned = choose_next(self._candidates(scripts, cut_off), self._journal, self._policy, handled, cut_off)
        if self._halving is None:
            return planned
        if planned is not None:
            if self._shares_model_dirs(planned.script):
                return planned  # to its end, unjudged: see _shares_model_dirs
            return self._halving.first_run(planned, watched=self._is_watched(planned.script))
        return self._next_in_halving(scripts, handled, cut_off)

    def waiting_for_model_dir(self, taken: Set[Tuple[str, str, Optional[str]]], cut_off: Set[Tuple[str, str]]) -> Optional[PlannedRun]:
        """With next() finding nothing: the version that would run but for its model_dir, which
        another version uses now (under another daemon, maybe of another queue); None if none."""
        if not self._busy_model_dirs():
            return None
        scripts = [self._without_cancelled(script) for script in self.queue.current()]
        self._passing_over_busy = False
        try:
            return choose_next(self._candidates(scripts, cut_off), self._journal, self._policy, _Handled(self._handled, taken, cut_off), cut_off)
        finally:
            self._passing_over_busy = True

    def take_stops(self) -> List[JudgedOut]:
        """The paused versions early stopping judged out since the last call, to be recorded."""
        stops, self._stops = self._stops, []
        return stops

    def judge_again(self, judged: JudgedOut) -> None:
        """A stop that was not recorded (a version it was judged against was cancelled since, or
        another daemon moved its version on): the version is judged anew at the next look."""
        key = (judged.script.label, judged.stop.version, judged.sha256, judged.stop.rung)
        self._stops_taken.discard(key)
        self._handled.discard(key[:3])
        self._halving_seen = None

    def _next_in_halving(self, scripts: List[QueuedScript], handled: "_Handled", cut_off: Set[Tuple[str, str]]) -> Optional[PlannedRun]:
        """With nothing new to start: a paused version to promote (or one to start again,
        watched, its model unable to resume); the stops found on the way are kept for the loop."""
        assert self._halving is not None
        seen = (self._journal.lines_read, len(self._handled), len(cut_off), len(self._cancelled), tuple(script.label for script in scripts))
        if seen == self._halving_seen:
            return None  # nothing changed since the last look found nothing
        for script in scripts:
            listing = self.listing(script)
            if listing is None or self._shares_model_dirs(script):
                continue
            fingerprint = self.fingerprints.of_versions(listing)
            standings = self._halving.standings(script, listing.names, fingerprint, handled, cut_off)
            for standing in standings:
                event = self._journal.latest(script.label, standing.version)
                if standing.standing is Standing.PENDING and event is not None and event.get("event") == "paused":
                    return self._halving.restarted(script, standing.version, fingerprint, listing.sha256)
            moves = self._halving.moves(standings)
            for stop in moves.stops:
                key = (script.label, stop.version, fingerprint(stop.version), stop.rung)
                if key not in self._stops_taken:
                    self._stops_taken.add(key)
                    self._handled.add(key[:3])  # ended in this session: not "skipped by -u"
                    model_dir = str(self._paths.model_dir(script.label, listing.suffixes.get(stop.version)))
                    basis = tuple(event for event in (self._journal.latest(script.label, name) for name in listing.names) if event is not None)
                    self._stops.append(JudgedOut(script, stop, fingerprint(stop.version), model_dir, basis))
            for promotion in moves.promotions:
                if promotion.unreported:
                    label = f"{script.label}:{promotion.version}"
                    if promotion.rung >= 0:
                        why = f"reported no number for '{self._halving.settings.metric}' by rung {promotion.rung}"
                    elif self._halving.judged_with_other_settings(script.label, promotion.version):
                        why = "was paused at a rung of other [EARLY_STOPPING] settings (its metric or rungs were edited since)"
                    else:
                        why = f"its values at the rungs in the journal ({self._journal.path.name}) cannot be read"
                    self._say.warn_once((script.label, f"unreported:{promotion.version}"), f"{label} {why}; it is not judged, and runs to its end")
                return self._halving.promoted(script, promotion, fingerprint, listing.sha256)
        self._halving_seen = seen
        return None

    def paused(self) -> int:
        """How many queued versions are paused at an early-stopping rung now."""
        count = 0
        for script in self.queue.current():
            listing = self.catalog.known(script.path, self.fingerprints.sha256(script.path)) if script.path.exists() else None
            if listing is None:
                continue
            fingerprint = self.fingerprints.of_versions(listing)
            count += sum(script.wants(name) and self._is_paused(script.label, name, fingerprint(name)) for name in listing.names)
        return count

    def _is_paused(self, script: str, version: str, sha256: str) -> bool:
        latest = self._journal.latest(script, version)
        return latest is not None and latest.get("event") == "paused" and latest.get("sha256") == sha256

    def _shares_model_dirs(self, script: QueuedScript) -> bool:
        """Whether versions of ``script`` the queue asks for share a model_dir (no
        MODEL_DIR_SUFFIX, as in the original): early stopping cannot judge them, as a version
        paused at a rung leaves its checkpoint for the next one to take as its own (it trains
        nothing and is judged by the other's value). They run to their end, unjudged, and the
        log says so once."""
        listing = self.listing(script)
        if listing is None:
            return False
        key = (script.label, listing.sha256, script.only, script.excluded)
        shared = self._shared_model_dirs.get(key)
        if shared is None:  # once per content and selection: asked at every dispatch
            folders = [listing.suffixes.get(name) for name in listing.names if script.wants(name)]
            shared = self._shared_model_dirs[key] = len(set(folders)) != len(folders)
        if not shared:
            return False
        self._say.warn_once(
            (script.label, "shared model_dir"),
            f"{script.label}: versions share a model_dir (give each a MODEL_DIR_SUFFIX); early stopping cannot judge "
            "them, so they run to their end, unjudged",
        )
        return True

    def _is_watched(self, script: QueuedScript) -> bool:
        """Whether early stopping watches ``script``'s versions as they run (its model cannot
        resume at this content) instead of pausing them."""
        listing = self.listing(script)
        if listing is None or self._halving is None:
            return False
        key = (script.label, listing.sha256)
        known = self._watched.get(key)
        if known is None or (not known[1] and known[0] != self._journal.lines_read):
            # Looked for again only when the journal grew: once watched, always (at this content).
            known = (self._journal.lines_read, self._halving.is_watched(script, listing.names, self.fingerprints.of_versions(listing)))
            self._watched[key] = known
        return known[1]

    def cancel(self, request: ControlRequest) -> None:
        """What ``request`` names is not started again in this session (retries included)."""
        self._cancelled.append(request)
        self._retries = [planned for planned in self._retries if not request.matches(planned.script.label, planned.version)]

    def cancel_of(self, planned: PlannedRun) -> Optional[ControlRequest]:
        """The cancel of this session that names ``planned``, if one does."""
        return self.cancel_naming(planned.script.label, planned.version)

    def cancel_naming(self, script: str, version: str) -> Optional[ControlRequest]:
        """The cancel of this session that names ``script:version``, if one does."""
        return next((request for request in self._cancelled if request.matches(script, version)), None)

    def _without_cancelled(self, script: QueuedScript) -> QueuedScript:
        names = [request.version for request in self._cancelled if request.script == script.label]
        if not names:
            return script
        if None in names:
            return replace(script, only=())
        return replace(script, excluded=script.excluded | frozenset(names))

    def handled(self, planned: PlannedRun) -> None:
        """``planned`` is being started, claimed by another daemon, or recorded as failed: not again."""
        self._handled.add(_key(planned))

    def launched(self, planned: PlannedRun) -> None:
        """``planned`` left the launcher handled (not waiting for GPUs or its model_dir)."""
        if planned.attempt > 1 and self._retries:
            self._retries.pop(0)  # a retry leaves the list only once it has started

    def resume_in_session(self, planned: PlannedRun) -> None:
        """``planned`` was cut off by its keeper while no other daemon took it: it runs again."""
        self._handled.discard(_key(planned))
        self._handled_prefix.clear()  # the prefixes counted it as handled

    def retry_later(self, planned: PlannedRun) -> None:
        """``planned`` failed with attempts left: its next attempt goes before new versions
        (unless a cancel named it meanwhile)."""
        if not self.is_cancelled(planned):
            self._retries.append(planned)

    def is_cancelled(self, planned: PlannedRun) -> bool:
        """Whether a cancel during this session named ``planned``."""
        return any(request.matches(planned.script.label, planned.version) for request in self._cancelled)

    def queued(self, record: Dict[str, Any], scripts: Optional[List[QueuedScript]] = None) -> bool:
        """Whether the queue (``scripts``, else read now) names the version of a journal record."""
        queued = self.queue.current() if scripts is None else scripts
        script = next((script for script in queued if script.label == record["script"]), None)
        return script is not None and script.wants(record["version"])

    # -- what is left ------------------------------------------------------------------------

    def pending(
        self, taken: AbstractSet[Tuple[str, str, Optional[str]]], cut_off: AbstractSet[Tuple[str, str]], own_daemon: str = ""
    ) -> "QueueLeft":
        """What is still to run among the scripts already listed (listing the others would import
        them early), retries included; what other daemons run now (``own_daemon``: this one's
        key) and, of the session, have ended; what a cancel took before this daemon started it;
        and how many scripts are not listed yet. ``taken`` and ``cut_off`` are the session's,
        as for next()."""
        pending = unlisted = running_elsewhere = cancelled = 0
        ended_elsewhere: Set[str] = set()
        self._real_dirs = {}
        handled = _Handled(self._handled, taken, cut_off)
        for queued in self.queue.current():
            script = self._without_cancelled(queued)
            try:
                listing = self.catalog.known(script.path, self.fingerprints.sha256(script.path))
            except OSError:
                continue
            if listing is None:
                unlisted += 1
                continue
            fingerprint = self.fingerprints.of_versions(listing)
            for name in listing.names:
                sha256 = fingerprint(name)
                if not queued.wants(name):
                    continue
                key = (script.label, name, sha256)
                if self._journal.state(script.label, name) is RunState.RUNNING:
                    claim = self._journal.claim_of(script.label, name)
                    running_elsewhere += claim is not None and claim[2] != own_daemon  # its own the loop counts
                elif key in taken and (script.label, name) not in cut_off:
                    ended_elsewhere.add(f"{script.label}:{name}")  # by another daemon of the session
                elif not script.wants(name):
                    cancelled += key not in self._handled  # one this daemon ran is in its own counts
                elif key not in handled and decide(self._journal, script.label, name, sha256, self._policy, cut_off) is not None:
                    pending += 1
                elif self._halving is not None and self._is_paused(script.label, name, sha256):
                    pending += 1  # paused at a rung: early stopping has still to promote or stop it
        return QueueLeft(pending + len(self._retries), running_elsewhere, frozenset(ended_elsewhere), cancelled, unlisted)

    def work_left(self, taken: AbstractSet[Tuple[str, str, Optional[str]]], cut_off: AbstractSet[Tuple[str, str]]) -> bool:
        """Whether anything queued is still to run, each script listed to know: a daemon paused
        from its start, with every version finished already, ends instead of waiting for a
        resume that would start nothing."""
        left = self.pending(taken, cut_off)
        if left.pending or not left.unlisted:
            return left.pending > 0
        for script in self.queue.current():
            self.listing(script)  # a listing starts no version
        return self.pending(taken, cut_off).pending > 0

    def skipped_by_history(self, taken: AbstractSet[Tuple[str, str, Optional[str]]]) -> Tuple[int, int]:
        """Of the queued versions this session did not start: those -u left out because the
        journal has their end for this content, and those that were still to run when the
        session ended (the queue stopped early: a lost cluster, a full disk, --fail-fast).
        A version paused at a rung, or run by another daemon of the session (``taken``), is neither."""
        skipped = not_started = 0
        self._real_dirs = {}
        for script in map(self._without_cancelled, self.queue.current()):  # a cancelled version is said as cancelled
            listing = self.listing(script)
            if listing is None:
                continue
            fingerprint = self.fingerprints.of_versions(listing)
            for name in listing.names:
                sha256 = fingerprint(name)
                if not script.wants(name) or (script.label, name, sha256) in self._handled or (script.label, name, sha256) in taken:
                    continue
                if decide(self._journal, script.label, name, sha256, self._policy) is not None:
                    not_started += 1
                elif self._journal.state(script.label, name) not in (RunState.RUNNING, RunState.PAUSED):
                    skipped += 1
        return skipped, not_started

    # -- the scripts' listings -------------------------------------------------------------

    def listing(self, script: QueuedScript) -> Optional[ScriptListing]:
        """What ``script`` is now and which versions it has; None (reported) when it cannot run."""
        elsewhere = outside_models_dir(script.path, self.queue.models_dir, self._real_dirs)
        if elsewhere is not None:
            message = f"{script.label} is a link to {elsewhere}, outside models_dir ({self.queue.models_dir}); only scripts inside it run"
            self._report_broken_script(script, ScriptListing(sha256=f"link:{elsewhere}", error=ScriptError(message, phase="import")))
            return None
        try:
            sha256 = self.fingerprints.sha256(script.path)
        except OSError as exc:
            self._say.warn_once((script.label, "unreadable"), f"{script.label} cannot be read ({exc.strerror}); skipped")
            return None
        listing = self.catalog.listing(script.path, script.label, sha256)
        if listing is None:
            return None
        if listing.error is not None:
            self._report_broken_script(script, listing)
            return None
        for version, line in script.entry_lines:
            if version and version not in listing.names:
                where = EXECUTION_QUEUE if line is None else f"{EXECUTION_QUEUE}:{line}"
                known = ", ".join(listing.names) or "none"
                self._say.warn_once(
                    (script.label, f"unknown:{version}:{listing.sha256}"),
                    f"{where}: {script.label} has no version '{version}' (its versions: {known}); skipped",
                )
        return listing

    # -- inside --------------------------------------------------------------------------------

    def _retry(self, failed: PlannedRun) -> Optional[PlannedRun]:
        """The next attempt of a failed version: it continues in its model_dir, unless the script changed."""
        listing = self.listing(failed.script)
        if listing is None or failed.version not in listing.names:
            return None
        fingerprint = self.fingerprints.of_versions(listing)
        sha256 = fingerprint(failed.version)
        start = Start.RESUME if sha256 == failed.sha256 else Start.FRESH
        own = "" if sha256 == listing.sha256 else listing.sha256
        return PlannedRun(failed.script, failed.version, sha256, start, failed.attempt + 1, script_sha256=own)

    def _candidates(
        self, scripts: List[QueuedScript], cut_off: AbstractSet[Tuple[str, str]]
    ) -> Iterator[Tuple[QueuedScript, VersionFingerprints, Iterable[str]]]:
        for script in scripts:
            listing = self.listing(script)
            if listing is None:
                if self._stopping():
                    return
                continue
            fingerprint = self.fingerprints.of_versions(listing)
            yield script, fingerprint, self._unhandled_names(script.label, listing, fingerprint, cut_off)

    def _unhandled_names(
        self, label: str, listing: ScriptListing, fingerprint: VersionFingerprints, cut_off: AbstractSet[Tuple[str, str]]
    ) -> Iterator[str]:
        """The versions of ``listing`` in run order, less the first ones this session handled
        (but for those cut off since, which resume) and those whose model_dir a running
        version uses (they wait; later ones may go first)."""
        key = (label, listing.sha256)
        names = listing.names
        # Kept for this very listing: one learned again (a glob of its config files matching
        # other files) may have other names in other places. And only while every version's
        # fingerprint is its script's: a config file edited mid-session makes a handled
        # version new again, wherever it stands.
        kept = self._handled_prefix.get(key)
        start = kept[1] if kept is not None and kept[0] is listing and not listing.inputs else 0
        while start < len(names) and (label, names[start], fingerprint(names[start])) in self._handled:
            start += 1
        self._handled_prefix[key] = (listing, start)
        known = self._places.get(key)
        if known is None or known[0] is not listing:
            known = self._places[key] = (listing, {name: index for index, name in enumerate(names)})
        places = known[1]
        resumed = sorted(
            (name for script, name in cut_off if script == label and places.get(name, len(names)) < start), key=places.__getitem__
        )
        busy = self._busy_names(label, listing)
        for name in itertools.chain(resumed, itertools.islice(names, start, None)):
            if name not in busy:
                yield name

    def _busy_names(self, label: str, listing: ScriptListing) -> AbstractSet[str]:
        busy_dirs = self._busy_model_dirs() if self._passing_over_busy else frozenset()
        if not busy_dirs:
            return frozenset()
        key = (label, listing.sha256)
        known = self._names_by_dir.get(key)
        if known is None or known[0] is not listing:
            known = self._names_by_dir[key] = (listing, {})
            for name in listing.names:
                known[1].setdefault(str(self._paths.model_dir(label, listing.suffixes.get(name))), []).append(name)
        by_dir = known[1]
        return {name for folder in busy_dirs for name in by_dir.get(folder, ())}

    def _report_broken_script(self, script: QueuedScript, listing: ScriptListing) -> None:
        """A script whose versions cannot be learned: kept for the loop to record, once per content."""
        if self._say.first_time((script.label, listing.sha256)):
            self._broken.append((script, listing))

    def take_broken(self) -> List[Tuple[QueuedScript, ScriptListing]]:
        """The scripts found broken since the last call, each once per content, to be recorded."""
        broken, self._broken = self._broken, []
        return broken


class QueueLeft(NamedTuple):
    """What the queue holds beyond what this daemon runs and ended: versions still to run,
    versions other daemons run now, versions other daemons of the session have ended, versions
    cancelled before this daemon started them, and scripts not listed yet (their versions are
    counted once imported)."""

    pending: int
    running_elsewhere: int
    ended_elsewhere: FrozenSet[str]  # script:version, of which this daemon may have recorded the last word
    cancelled: int
    unlisted: int


class _Handled:
    """What this session must not start (again): what it handled or any daemon of it claimed,
    but for the versions cut off since, which resume. A view, not a set built per choice."""

    def __init__(self, own: AbstractSet[VersionKey], taken: AbstractSet[Tuple[str, str, Optional[str]]], cut_off: AbstractSet[Tuple[str, str]]) -> None:
        self._own = own
        self._taken = taken
        self._cut_off = cut_off

    def __contains__(self, key: object) -> bool:
        assert isinstance(key, tuple)
        return (key in self._own or key in self._taken) and key[:2] not in self._cut_off


def _key(planned: PlannedRun) -> VersionKey:
    return (planned.script.label, planned.version, planned.sha256)
