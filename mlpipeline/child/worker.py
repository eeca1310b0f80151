"""The worker: the process, forked by its keeper (keeper.py), that imports one script by path
and lists its versions or runs one of them, writing ``result.json`` into the run folder.

Everything that touches user code happens here, never in the daemon or the keeper.
"""
from __future__ import annotations

import errno
import math
import os
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from mlpipeline.child.interrupts import raised_by_script
from mlpipeline.records.digest import file_sha256, sha256_hex
from mlpipeline.records.files import json_text, surrogates_escaped, write_bytes_atomic
from mlpipeline.script_support.failures import ExplainedFailure
from mlpipeline.child.live_output import buffer_output
from mlpipeline.child.old_scripts import MODEL_NAMES, old_code_advice, pre_execution_arguments
from mlpipeline.executors.protocol import (
    ENDED_EPOCH,
    LIST_VERSIONS,
    RESULT_FILE,
    STEPS_EVENT,
    TRAINED_EVENT,
    ChildRequest,
    ScriptError,
    missing_message,
)
from mlpipeline.records.provenance import software_versions
from mlpipeline.records.run_record import read_run_record, update_run_record, write_run_record
from mlpipeline.script_support import channel, checkpoint_request
from mlpipeline.script_support.channel import send as send_event
from mlpipeline.script_support.channel import to_plain

_THIS_FILE = os.path.abspath(__file__)


class VersionFailure(Exception):
    """The script or version cannot go on; carries what the daemon records."""

    def __init__(self, error: ScriptError) -> None:
        super().__init__(error.message)
        self.error = error


_SCRIPT_SUPPORT = os.path.join(os.path.dirname(os.path.dirname(_THIS_FILE)), "script_support") + os.sep


def user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` from the first frame outside this module: the user's code,
    without the frames of the script API it ends in (a missing parameter's ``__missing__``)."""
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == _THIS_FILE:
        tb = tb.tb_next
    import traceback  # here: a version that ends well never needs it

    shown = traceback.TracebackException(type(exc), exc, tb)
    frames = list(shown.stack)
    while len(frames) > 1 and os.path.abspath(frames[-1].filename).startswith(_SCRIPT_SUPPORT):
        frames.pop()
    shown.stack = traceback.StackSummary.from_list(frames)
    return "".join(shown.format())


def call_user(label: str, phase: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call user code; an exception becomes a VersionFailure naming ``label`` and ``phase``."""
    try:
        return function(*args, **kwargs)
    except ExplainedFailure as exc:
        # Nothing to debug in the user's code: the message says what is wrong and what to do.
        raise VersionFailure(ScriptError(message=f"{label}: {exc}", phase=phase)) from exc
    except KeyboardInterrupt as exc:
        if not raised_by_script() or type(exc).__module__.startswith("mlpipeline."):
            raise  # a SIGINT (or, in --pdb's own process, a SIGTERM or SIGHUP): stopped, not failed
        raise _user_failure(label, phase, exc) from exc
    except BaseException as exc:  # noqa: BLE001 - any user error is recorded, not raised (SystemExit, GeneratorExit too)
        raise _user_failure(label, phase, exc) from exc


def _user_failure(label: str, phase: str, exc: BaseException) -> VersionFailure:
    try:
        advice = old_code_advice(exc)
    except Exception:  # noqa: BLE001 - an exception whose str() raises
        advice = None
    return VersionFailure(
        ScriptError(
            message=f"{label} failed in {phase}: {exception_text(exc)}" + (f" ({advice})" if advice else ""),
            traceback=user_traceback(exc),
            phase=phase,
            no_space=refused_for_space(exc),
        )
    )


def refused_for_space(exc: BaseException) -> Optional[str]:
    """The file a full disk or an exceeded quota refused, when that is what ``exc`` (or what
    caused it) is: "" when it names none; None for any other failure."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 20:
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return os.fsdecode(current.filename) if isinstance(current.filename, (str, bytes, os.PathLike)) else ""
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None


def exception_text(exc: BaseException) -> str:
    """``ValueError: bad value``, or the type alone where the exception cannot say more."""
    from mlpipeline.records.text import without_addresses  # here: its patterns cost a version that ends well 2 ms

    try:
        text = without_addresses(str(exc))
    except Exception:  # noqa: BLE001 - an exception of the script's whose __str__ raises
        return f"{type(exc).__name__} (its message could not be read: its __str__ raised)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_script(path: str, label: str, models_dir: Optional[str]) -> bytes:
    """The bytes of the script at ``path``, which must really be inside ``models_dir``.

    Checked here, where the script is read, as well as by the daemon: a script replaced by a
    link to a file elsewhere between the daemon's look and this read is not imported.
    """
    real = os.path.realpath(path)
    if models_dir is not None:
        root = os.path.realpath(models_dir)
        if os.path.commonpath([real, root]) != root:
            message = f"{label} is a link to {real}, outside models_dir ({root}); only scripts inside it run"
            raise VersionFailure(ScriptError(message=message, phase="import"))
    try:
        # The very file just checked: if it became a link since, the open fails instead.
        handle = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(handle, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise VersionFailure(ScriptError(message=f"{label} cannot be read ({exc.strerror or exc})", phase="import")) from None


_IMPORTED: Dict[Tuple[str, str], Tuple[types.ModuleType, bytes]] = {}
"""The script a script server imported before it forked this worker (script_preload.py), by
(path, sha256)."""


def keep_imported(path: str, sha256: str, module: types.ModuleType, source: bytes) -> None:
    """Let the workers forked from this process take ``module`` as the import of ``path``."""
    _IMPORTED[(path, sha256)] = (module, source)


def load_script(
    path: str, label: str, models_dir: Optional[str] = None, required_sha256: Optional[str] = None
) -> Tuple[types.ModuleType, bytes]:
    """Import the script at ``path`` from the exact bytes fingerprinted; returns (module, those bytes).

    With ``required_sha256``, bytes with another fingerprint are refused before any of them runs.
    A script server's import of these very bytes is taken as it is.
    """
    source = read_script(path, label, models_dir)
    if required_sha256 is not None or _IMPORTED:
        sha256 = sha256_hex(source)
        if required_sha256 is not None and sha256 != required_sha256:
            raise VersionFailure(ScriptError(message=other_file_message(label, path, sha256, required_sha256), phase="import"))
        if (path, sha256) in _IMPORTED:
            return _IMPORTED[(path, sha256)]
    # The script's folder first, then models_dir, as the original had it: a script in a
    # subfolder imports its neighbours and the shared modules at the top alike.
    for position, folder in enumerate((os.path.dirname(path), models_dir)):
        if folder and folder not in sys.path:
            sys.path.insert(position, folder)
    stem = Path(path).stem
    name = stem if stem.isidentifier() and stem not in sys.modules else "mlpipeline_script"
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte in the source (before 3.12)
        import traceback

        where = f"{label}:{exc.lineno}" if getattr(exc, "lineno", None) else label
        message = f"{where}: syntax error: {exc.msg}" if isinstance(exc, SyntaxError) else f"{label}: not Python source ({exc})"
        raise VersionFailure(
            ScriptError(
                message=message,
                traceback="".join(traceback.format_exception_only(type(exc), exc)),
                phase="import",
            )
        ) from exc
    call_user(label, "import", exec, code, module.__dict__)
    return module, source


def find_model(module: types.ModuleType, label: str) -> Any:
    """The script's MODEL (or EXPERIMENT), checked to be a usable mlpipeline.helper.Model."""
    from mlpipeline.helper import Model
    from mlpipeline.script_support.versions import Versions

    name = next((name for name in MODEL_NAMES if hasattr(module, name)), None)
    if name is None:
        raise VersionFailure(
            ScriptError(
                message=f"{label} defines no MODEL: a model script sets MODEL to an instance of "
                "a mlpipeline.helper.Model subclass",
                phase="import",
            )
        )
    model = getattr(module, name)
    if not isinstance(model, Model):
        raise VersionFailure(
            ScriptError(
                message=f"{label}: {name} is {_with_article(type(model).__name__)}, not a mlpipeline.helper.{'Experiment' if name == 'EXPERIMENT' else 'Model'}",
                phase="import",
            )
        )
    if not isinstance(getattr(model, "versions", None), Versions):
        raise VersionFailure(
            ScriptError(
                message=f"{label}: {name} has no Versions; does {type(model).__name__}.__init__ call "
                "super().__init__(versions)?",
                phase="import",
            )
        )
    return model


def list_versions(request: ChildRequest) -> Dict[str, Any]:
    from mlpipeline.helper import Experiment
    from mlpipeline.script_support.related_files import imported_below, stamps

    module, source = load_script(request.script_path, request.script_label, request.models_dir)
    sha256 = sha256_hex(source)
    model = find_model(module, request.script_label)
    versions = call_user(request.script_label, "its versions", model.versions.get_versions)
    names = [version["name"] for version in versions]
    missing = {version["name"]: version.missing_required() for version in versions if version.missing_required()}
    invalid: Dict[str, str] = {}
    unusable_suffixes: Dict[str, str] = {}
    suffixes: Dict[str, str] = {}
    for version in versions:
        suffix, problem = _folder_suffix(version.get("model_dir_suffix"))
        if problem is not None:
            unusable_suffixes[version["name"]] = f"{request.script_label}:{version['name']}: {problem}"
        elif suffix:
            suffixes[version["name"]] = suffix
    if isinstance(model, Experiment):
        # Release 1.1a3.post8 gave each version without a suffix a folder of its own.
        suffixes = {name: suffixes.get(name, name) for name in names}
    gpus = {version["name"]: to_plain(version["gpus"]) for version in versions if version.get("gpus") is not None}
    listing = {"ok": True, "sha256": sha256, "names": names, "missing": missing, "suffixes": suffixes, "gpus": gpus}
    for version in versions:
        for key, integer in (("batch_size", True), ("epoc_count", False)):
            problem = _positive_problem(f"{request.script_label}:{version['name']}", key, version.get(key), integer)
            if key in version and problem is not None:
                invalid.setdefault(version["name"], problem)
    memory = {version["name"]: to_plain(version["gpu_memory"]) for version in versions if version.get("gpu_memory") is not None}
    if memory:
        listing["gpu_memory"] = memory
    configs = {name: model.versions.config_version(name) for name in names}
    configs = {name: config for name, config in configs.items() if config is not None}
    if configs:
        # The daemon fingerprints each of these versions by these files too, and lists the
        # script again when a glob matches other files.
        listing["inputs"] = {name: [path for path, _ in config.files] for name, config in configs.items()}
        listing["globs"] = [[pattern, matched] for pattern, matched in model.versions.config_globs]
        for name, config in configs.items():
            invalid.pop(name, None)  # its file may set them: judged when it runs
            if config.problem is not None:
                missing.pop(name, None)  # it fails for its file when it runs, not for what the file lacks
    invalid.update(unusable_suffixes)
    if invalid:
        listing["invalid"] = invalid
    slips = _parameter_slips(request.script_label, versions)
    if slips:
        listing["slips"] = slips
    # Versions a module beside the script adds (a grid kept in sweeps.py) are learned again
    # when that module changes, though the script's bytes do not.
    modules = imported_below([os.path.dirname(request.script_path), request.models_dir or ""], request.script_path)
    if modules:
        # The content too: a module touched, or checked out again as it was, lists nothing anew.
        listing["modules"] = [[*stamp, file_sha256(stamp[0]) or ""] for stamp in stamps(modules)]
    return _names_refused_here(listing)


_READ_BY_MLPIPELINE = ("dataloader", "batch_size", "epoc_count", "learning_rate", "model_dir_suffix", "order", "gpus", "gpu_memory")


def _parameter_slips(label: str, versions: List[Any]) -> List[str]:
    """What to say of each parameter whose name is a slip of one mlpipeline reads
    (``batchsize``, ``epoch_count``, ``gpu``): kept as the script's own, it would leave the
    real one at its default without a word."""
    meant: Dict[Any, Optional[str]] = {}
    found: Dict[str, List[str]] = {}
    for version in versions:
        for key in version:
            if key not in meant:
                meant[key] = _slip_of(key) if isinstance(key, str) else None
            if meant[key] is not None:
                found.setdefault(key, []).append(version["name"])
    slips = []
    for key, names in found.items():
        which = f"version {names[0]!r}" if len(names) == 1 else f"versions {names[0]!r} and {len(names) - 1} more"
        slips.append(f"{label}: {which} set {key!r}, which mlpipeline does not read; did you mean {meant[key]!r}? (kept as the script's own parameter)")
    return slips


def _slip_of(key: str) -> Optional[str]:
    """The parameter mlpipeline reads that ``key`` is a slip of: the same but for case, '_'
    and '-' or a plural 's' (``Batch-Size``, ``gpu``), or, for the long names, one letter off
    (``epoch_count``). Short names are not guessed at: ``border`` is no slip of ``order``."""
    import difflib

    if key in _READ_BY_MLPIPELINE or key == "name":
        return None
    plain = key.lower().replace("_", "").replace("-", "")
    for known in _READ_BY_MLPIPELINE:
        bare = known.replace("_", "")
        if plain == bare or plain.rstrip("s") == bare.rstrip("s"):
            return known
        if len(bare) >= 8 and difflib.SequenceMatcher(None, plain, bare).ratio() >= 0.9:
            return known
    return None


def _folder_suffix(suffix: Any) -> Tuple[Optional[str], Optional[str]]:
    """MODEL_DIR_SUFFIX as the folder name it adds (its ``str()``, as the original made it), or
    why it cannot be one: an object whose ``str()`` holds its memory address would name
    another folder at every run, and finished work would be redone."""
    if suffix is None or isinstance(suffix, str):
        return suffix, None
    try:
        text = str(suffix)
    except Exception:  # noqa: BLE001 - the script's object (or an integer past 4,300 digits)
        return None, f"MODEL_DIR_SUFFIX must be a folder name (a string), and str() of {_with_article(type(suffix).__name__)} fails"
    if " at 0x" in text:
        return None, f"MODEL_DIR_SUFFIX must be a folder name (a string), not {_with_article(type(suffix).__name__)}, whose text holds its memory address"
    return text, None


def _names_refused_here(listing: Dict[str, Any]) -> Dict[str, Any]:
    """``listing`` with the versions whose names cannot be carried moved to ``refused``, here,
    where the name is still as the script made it: one holding a lone surrogate (a file
    name's byte that is not UTF-8) would reach the daemon escaped, as another name, which no
    run could find again."""
    from mlpipeline.script_support.versions import name_problem

    refused: Dict[str, str] = {}
    kept: List[Any] = []
    for name in listing["names"]:
        problem = name_problem(name) if isinstance(name, str) and name else None
        if problem is None:
            kept.append(name)  # a name of the wrong type is the daemon's to refuse
        else:
            refused[surrogates_escaped(name)] = problem
    if refused:
        listing["names"] = kept
        names = set(kept)
        for key in ("missing", "suffixes", "gpus", "gpu_memory", "inputs", "invalid"):
            if isinstance(listing.get(key), dict):
                listing[key] = {name: value for name, value in listing[key].items() if name in names}
        listing["refused"] = refused
    return listing


_DATALOADER_METHODS = ("get_train_input", "get_test_input", "get_train_sample_count", "get_test_sample_count")


def config_keys(config: Any) -> Any:
    """The parameters a configuration file set for a version made from one (none otherwise)."""
    return config.parameters if config is not None else ()


def _a_number(value: Any) -> bool:
    """A finite int or float, not a bool (math.isfinite of an int past a float's range raises)."""
    return not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)))


def _positive_problem(label: str, key: str, value: Any, integer: bool, source: str = "") -> Optional[str]:
    valid = _a_number(value) and value > 0
    if integer:
        valid = valid and (isinstance(value, int) or value.is_integer())
    if valid:
        return None
    kind = "a positive integer" if integer else "a positive number"
    return f"{label}: {key.upper()} must be {kind}, not {_shown(value)}{source}"


def _positive(label: str, key: str, value: Any, integer: bool, source: str = "") -> None:
    problem = _positive_problem(label, key, value, integer, source)
    if problem is not None:
        raise VersionFailure(ScriptError(message=problem, phase="parameters"))


def _sample_count(label: str, name: str, method: Callable[[], Any]) -> float:
    """What the DataLoader's ``name`` says, checked to be a number of samples.

    A fraction (``len(data) * 0.8``) is accepted, as the original accepted it: the step count
    is rounded up, and evaluation is given the count as it is.
    """
    returned = call_user(label, name, method)
    count = to_plain(returned)
    if not _a_number(count) or count < 0 or count > _MOST_SAMPLES:
        message = f"{label}: {name}() returned {_shown(returned)}; it must return the number of samples"
        raise VersionFailure(ScriptError(message=message, phase=name))
    return int(count) if count == int(count) else count


_MOST_SAMPLES = 2**63
"""More samples than any data set holds: a count past it is a slip (and past 1e308 no float)."""


def _total_steps(label: str, epochs: Any, samples: Any, batch_size: Any) -> int:
    """EPOC_COUNT x samples / BATCH_SIZE, rounded up: exact in whole numbers (10**30 epochs is
    no float); a count no float holds is the version's failure, said so."""
    if all(isinstance(value, int) for value in (epochs, samples, batch_size)):
        return -(-epochs * samples // batch_size)
    try:
        return math.ceil(epochs * samples / batch_size)
    except (OverflowError, ValueError):
        message = f"{label}: EPOC_COUNT x the training samples / BATCH_SIZE is more steps than a number holds ({_shown(epochs)} epochs)"
        raise VersionFailure(ScriptError(message=message, phase="parameters")) from None


def _with_article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _shown(value: Any) -> str:
    """``value`` as a message shows it: an integer too long to print by its length."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a value of the script's own whose repr raises
        return type(value).__name__


def _step_count(label: str, trained: Any) -> Optional[int]:
    """What get_trained_step_count() returned, as None or a whole number of steps."""
    if trained is None:
        return None
    plain = to_plain(trained)
    if not _a_number(plain) or plain != int(plain) or plain < 0:
        message = f"{label}: get_trained_step_count() returned {_shown(trained)}; it must return None or a whole number of steps (0 or more)"
        raise VersionFailure(ScriptError(message=message, phase="get_trained_step_count"))
    return int(plain)


def _trained_after_failure(model: Any, before: Optional[int]) -> Optional[int]:
    """The steps a version trained before it failed, as its checkpoints say (None: unknown;
    the daemon then takes the last step it reported)."""
    try:
        after = _step_count("", model.get_trained_step_count())
    except Exception:  # noqa: BLE001 - a model that cannot say after a failure says nothing
        return None
    return None if after is None else max(after - (before or 0), 0)


def run_version(request: ChildRequest, result: Dict[str, Any]) -> None:
    """Run one version through the Model hooks, filling ``result`` as it goes."""
    if threading.current_thread() is threading.main_thread():
        checkpoint_request.listen()
    required = request.sha256 if request.check_sha256 else None
    module, source = load_script(request.script_path, request.script_label, request.models_dir, required)
    result["sha256"] = sha256_hex(source)
    model = find_model(module, request.script_label)
    label = f"{request.script_label}:{request.version}"
    try:
        version = model.versions.getVersion(request.version)
    except ValueError as exc:
        raise VersionFailure(ScriptError(message=f"{request.script_label}: {exc}", phase="parameters")) from exc
    config = model.versions.config_version(request.version)
    if config is not None:
        from mlpipeline.script_support.config_files import apply_gin, version_fingerprint

        result["sha256"] = version_fingerprint(result["sha256"], [digest for _, digest in config.files])
        if config.problem is not None:
            raise VersionFailure(ScriptError(message=f"{label}: {config.problem}", phase="config file"))
        if config.kind == "gin":
            call_user(label, "its gin file", apply_gin, config)
    if not hasattr(model, "name"):
        try:
            model.name = os.path.relpath(request.script_path)  # what the original set: models/<script>.py
        except AttributeError:
            pass  # a class that refuses new attributes never relied on it
    result["parameters"] = to_plain({k: v for k, v in version.items() if k != "name"})
    missing = version.missing_required()
    if missing:
        raise VersionFailure(ScriptError(message=missing_message(label, missing), phase="parameters"))
    batch_size, epoc_count = version["batch_size"], version["epoc_count"]
    # A parameter a configuration file set is said to come from there.
    set_by = f" (set by {config.source})" if config is not None else ""
    _positive(label, "batch_size", batch_size, integer=True, source=set_by if "batch_size" in config_keys(config) else "")
    _positive(label, "epoc_count", epoc_count, integer=False, source=set_by if "epoc_count" in config_keys(config) else "")
    result["epochs"] = epoc_count
    dataloader = version["dataloader"]
    missing_methods = [name for name in _DATALOADER_METHODS if not callable(getattr(dataloader, name, None))]
    if missing_methods:
        where = set_by if "dataloader" in config_keys(config) else ""
        message = (
            f"{label}: DATALOADER must be a mlpipeline.helper.DataLoader, not {type(dataloader).__name__} "
            f"{str(dataloader)[:80]!r}{where}; it has no {', '.join(missing_methods)}"
        )
        raise VersionFailure(ScriptError(message=message, phase="parameters"))

    from mlpipeline._checkpointed import CheckpointedModel
    from mlpipeline.helper import Experiment
    from mlpipeline.utils import ExecutionModeKeys, ModeKeys

    exec_mode = ExecutionModeKeys.TRAIN if request.execution_mode else ExecutionModeKeys.TEST
    model_dir = request.model_dir
    run_record = dict(request.run_record or {})
    channel.forget_metrics()
    paused_before: Dict[str, Any] = {}
    try:
        if request.fresh and model.allow_delete_model_dir:
            call_user(label, "clean_model_dir", model.clean_model_dir, model_dir)
        if request.run_record is not None:
            if request.until_step is not None:
                paused_before = _paused_at(Path(model_dir))  # before this run's record replaces it
            # After the clean, which may empty the folder, and before any training.
            run_record["software"] = software_versions()
            try:
                write_run_record(
                    Path(model_dir), Path(request.script_path).name, source, result["parameters"], run_record,
                    configs=config.record if config is not None else None,
                )
            except OSError as exc:
                message = f"{label}: its run record cannot be written in {model_dir} ({exc.strerror or exc})"
                raise VersionFailure(ScriptError(message=message, phase="run record", no_space=refused_for_space(exc))) from None
        hook_arguments = pre_execution_arguments(model.pre_execution_hook, version, model_dir, exec_mode)
        call_user(label, "pre_execution_hook", model.pre_execution_hook, *hook_arguments)
        if isinstance(model, Experiment):
            call_user(label, "copy_related_files", model.copy_related_files, model_dir)
        train_count = _sample_count(label, "get_train_sample_count", dataloader.get_train_sample_count)
        test_count = _sample_count(label, "get_test_sample_count", dataloader.get_test_sample_count)
        if request.execution_mode:
            total = _total_steps(label, epoc_count, train_count, batch_size)
            trained = call_user(label, "get_trained_step_count", model.get_trained_step_count)
            trained = _step_count(label, trained)
            steps = total if trained is None or model.reset_steps else max(total - trained, 0)
            if request.until_step is not None and not model.reset_steps:
                # Early stopping: up to the rung, where the version pauses with its model saved.
                steps = max(min(steps, request.until_step - (trained or 0)), 0)
            eval_train_steps, eval_test_steps = train_count, test_count
        else:
            # Called and checked as -r calls it, in this empty model_dir: a slip in it fails
            # the dry run, not every version of the real one.
            _step_count(label, call_user(label, "get_trained_step_count", model.get_trained_step_count))
            total, trained, steps = 1, None, 1
            eval_train_steps = eval_test_steps = 1
        result["steps"] = {"trained": steps, "total": total, "already_trained": trained}
        # The daemon learns the plan before any step: a version killed midway is then recorded
        # with the steps it had before, and a "fresh" run that continues is said to.
        kept = bool(request.fresh and trained and not model.reset_steps and request.execution_mode)
        cleaned = bool(request.fresh and model.allow_delete_model_dir)  # clean_model_dir ran, and left it
        send_event({"type": STEPS_EVENT, "steps": result["steps"], "continued": kept, "cleaned": cleaned})
        if steps > 0:
            result["steps"]["trained"] = 0  # until train_model has run
            train_input = call_user(label, "get_train_input", dataloader.get_train_input, mode=ModeKeys.TRAIN)
            try:
                call_user(label, "train_model", model.train_model, train_input, steps)
            except VersionFailure:
                result["steps"]["trained"] = _trained_after_failure(model, trained)
                raise
            result["steps"]["trained"] = steps
            send_event({"type": TRAINED_EVENT})
            if isinstance(model, CheckpointedModel):
                call_user(label, "save_checkpoint", model.save_unsaved_steps)
                if request.execution_mode and not model.reset_steps and (trained or 0) <= model.step < (trained or 0) + steps:
                    # A loop left early (break): the steps its base counted, not all planned.
                    result["steps"]["trained"] = model.step - (trained or 0)
                result["steps_counted"] = True  # by the base itself: the daemon need not guess from reports
        reached = (trained or 0) + steps
        if request.until_step is not None and request.execution_mode and reached < total:
            # It can resume from here when its model says it has trained that far.
            after = _step_count(label, call_user(label, "get_trained_step_count", model.get_trained_step_count))
            result["pause"] = {"step": reached, "total": total, "resumable": after is not None and after >= reached}
            reported = channel.last_metrics()
            if steps == 0 and not reported and paused_before.get("step") == reached and paused_before.get("sha256") == result["sha256"]:
                # Its run that got here was cut off before its daemon read the reports.
                reported = paused_before["reported"]
            result["pause"]["reported"] = reported
            if run_record.get("run_id"):
                try:
                    paused_at = {"step": reached, "reported": reported, "sha256": result["sha256"]}
                    update_run_record(Path(model_dir), run_record["run_id"], paused_at=paused_at)
                except OSError:
                    pass  # its daemon has the reports, unless it dies too
        eval_input = call_user(label, "get_train_input", dataloader.get_train_input, mode=ModeKeys.EVALUATE)
        result["eval_train"] = to_plain(
            call_user(label, "evaluate_model (train input)", model.evaluate_model, eval_input, eval_train_steps)
        )
        test_input = call_user(label, "get_test_input", dataloader.get_test_input)
        result["eval_test"] = to_plain(
            call_user(label, "evaluate_model (test input)", model.evaluate_model, test_input, eval_test_steps)
        )
    finally:
        if run_record.get("software"):
            # The frameworks a script imports lazily are in sys.modules only now.
            try:
                update_run_record(Path(model_dir), run_record["run_id"], software=software_versions())
            except OSError:
                pass  # the daemon's update after the end says the same, or names the problem
        result["model_summary"] = _summary(model)
        result["dataloader_summary"] = _summary(dataloader)


def _summary(owner: Any) -> str:
    """What a Model's or DataLoader's ``summery`` says, as text (``add_to_summery`` makes it one;
    a script may set anything): other values as JSON, objects by class name."""
    try:
        value = getattr(owner, "summery", "")
    except Exception:  # noqa: BLE001 - a property of the script's that raises
        return ""
    if isinstance(value, str):
        return value
    plain = to_plain(value)
    return plain if isinstance(plain, str) else json_text(plain)


def _paused_at(model_dir: Path) -> Dict[str, Any]:
    """Where the last run in ``model_dir`` paused, as its run record says: {"step", "reported",
    "sha256"} (the content that reported them), or {} for anything else (any bytes may be there)."""
    record = read_run_record(model_dir) or {}
    paused = record.get("paused_at")
    if isinstance(paused, dict) and isinstance(paused.get("step"), int) and isinstance(paused.get("reported"), dict):
        return paused
    return {}


def other_file_message(label: str, path: str, sha256: str, required: str) -> str:
    import socket

    return (
        f"{label}: host {socket.gethostname()} reads {path} as another file (sha256 {sha256[:12]}) than the "
        f"daemon fingerprinted ({required[:12]}); the shared folder shows this node an older or newer copy, "
        "so nothing of it was run here"
    )


def answer(request: ChildRequest) -> Tuple[Dict[str, Any], Optional[VersionFailure]]:
    """What ``request`` comes to: the result, and the failure that ended it, if one did."""
    result: Dict[str, Any] = {"ok": False}
    try:
        if request.action == LIST_VERSIONS:
            result = list_versions(request)
        else:
            run_version(request, result)
            result["ok"] = True
    except VersionFailure as failure:
        result["ok"] = False
        result["error"] = failure.error.to_json()
        return result, failure
    except Exception as exc:  # noqa: BLE001 - a value of the script's our own code could not take
        import traceback

        failure = VersionFailure(
            ScriptError(
                message=f"{request.script_label}{':' + request.version if request.version else ''}: mlpipeline could not take "
                f"what the script gave ({exception_text(exc)}); "
                "this is a bug of mlpipeline's, the traceback shows where",
                traceback=traceback.format_exc(),
                phase="mlpipeline",
            )
        )
        result["ok"] = False
        result["error"] = failure.error.to_json()
        return result, failure
    return result, None


RESULT_BUDGET = 1 << 20
"""The most a result may take as JSON (1 MiB): it becomes a line of results.jsonl, which its
readers take up to 4 MiB, beside the version's parameters and record."""
_LEFT_OUT_FIRST = ("eval_train", "eval_test", "model_summary", "dataloader_summary")


def fitted_result(result: Dict[str, Any]) -> str:
    """``result`` as JSON of at most :data:`RESULT_BUDGET`: past it, the largest of the
    evaluations and summaries are left out, each said on stderr (the version's log), so that a
    version that trained is never recorded as one that reported nothing."""
    text = json_text(result)
    if len(text) <= RESULT_BUDGET:
        return text
    sizes = {key: len(json_text(result.get(key))) for key in _LEFT_OUT_FIRST if result.get(key) not in (None, "")}
    for key in sorted(sizes, key=sizes.get, reverse=True):
        result[key] = None if key.startswith("eval") else ""
        print(
            f"mlpipeline: {key} ({sizes[key] / 1e6:.1f} MB as JSON) is left out of the record: a version's result "
            f"may hold {RESULT_BUDGET >> 20} MiB; write large outputs to files in its model_dir",
            file=sys.stderr,
        )
        text = json_text(result)
        if len(text) <= RESULT_BUDGET:
            return text
    error = result.get("error")
    if isinstance(error, dict):  # a failure's message and traceback, cut to their ends
        for key in ("message", "traceback"):
            if isinstance(error.get(key), str) and len(error[key]) > 65536:
                error[key] = "[...] " + error[key][-65536:]
    parameters = result.get("parameters")
    if isinstance(parameters, dict):
        # Each measured once: a result of 60,000 parameters is encoded twice, not 60,000 times.
        # The largest go first; a parameter is left out whole (its key too).
        over = len(json_text(result)) - RESULT_BUDGET
        sizes = {key: len(json_text(key)) + len(json_text(value)) + 4 for key, value in parameters.items()}  # ": ", ", "
        left_out = []
        for key in sorted(sizes, key=sizes.get, reverse=True):
            if over <= 0:
                break
            del parameters[key]
            over -= sizes[key]
            left_out.append(key)
        if left_out:
            shown = ", ".join(repr(key[:40]) for key in left_out[:5]) + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "")
            print(f"mlpipeline: {len(left_out)} parameters too large to record are left out of it: {shown}", file=sys.stderr)
    return json_text(result)


def main(argv: Optional[List[str]] = None) -> int:
    buffer_output()
    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    request = ChildRequest.read(run_dir)
    sys.argv = [request.script_path]
    result, _ = answer(request)
    result[ENDED_EPOCH] = time.time()  # the daemon's own clock may have stopped meanwhile (SIGSTOP)
    write_bytes_atomic(run_dir / RESULT_FILE, fitted_result(result).encode("utf-8"), durable=False)  # read once, right after
    sys.stdout.flush()
    sys.stderr.flush()
    return 0 if result["ok"] else 1

