"""The three TOML files: mlp.config (how to run) and the two queues (what to run).

Every problem is a :class:`ConfigError` that names the file, the line and the key.
"""
from __future__ import annotations

import os

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mlpipeline.queue.config_files import (  # noqa: F401 - ConfigError and the names are this module's too
    EXECUTION_QUEUE,
    PROJECT_CONFIG,
    TEST_QUEUE,
    ConfigError,
    config_text,
    parse_toml_text,
    read_config_bytes,
)
from mlpipeline.queue.ini import POST8_KEYS, POST8_QUEUES, ini_to_toml, looks_like_ini
from mlpipeline.script_support.versions import name_problem, shown_name
from mlpipeline.records.files import surrogates_escaped

from mlpipeline.queue.project_keys import (
    EARLY_STOPPING_KEYS,
    MLP_KEYS,
    REQUIRED,
    SLURM_KEYS,
    TRACKING_DIR_NEEDS,
    TRACKING_URI_NEEDS,
    KeyProblem,
    default,
)


@dataclass(frozen=True)
class SlurmSettings:
    """mlp.config's [SLURM] table: what each version's sbatch is given besides its GPUs."""

    partition: Optional[str] = SLURM_KEYS["partition"].default
    time: Optional[str] = SLURM_KEYS["time"].default
    sbatch_args: Tuple[str, ...] = SLURM_KEYS["sbatch_args"].default


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """mlp.config's [EARLY_STOPPING] table: how the versions of a script are judged at rungs of
    ``grace_steps * reduction_factor ** k`` steps (execution/early_stopping.py)."""

    metric: str
    grace_steps: int
    mode: str = EARLY_STOPPING_KEYS["mode"].default
    rule: str = EARLY_STOPPING_KEYS["rule"].default
    reduction_factor: int = EARLY_STOPPING_KEYS["reduction_factor"].default


@dataclass(frozen=True)
class ProjectConfig:
    """mlp.config, validated: where the scripts are and how to run them."""

    project_dir: Path
    models_dir: Path
    outputs_dir: Path
    on_script_change: str = default("on_script_change")
    version_timeout: float = default("version_timeout")
    retries: int = default("retries")
    workers: int = default("workers")
    gpus: Optional[Tuple[str, ...]] = default("gpus")
    gpu_busy_memory: float = default("gpu_busy_memory")
    preload: Tuple[str, ...] = default("preload")
    preload_scripts: bool = default("preload_scripts")
    on_version_end: Tuple[str, ...] = default("on_version_end")
    listing_timeout: float = default("listing_timeout")
    executor: str = default("executor")
    ray_address: Optional[str] = default("ray_address")
    tracking: Optional[str] = default("tracking")
    tracking_uri: Optional[str] = default("tracking_uri")
    tracking_dir: Optional[Path] = default("tracking_dir")
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    early_stopping: Optional[EarlyStoppingSettings] = None  # None: every version runs to its end
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    """The line of mlp.config on which each [MLP] key given is set, for messages that come
    later (a cluster that cannot be reached, a tracker that cannot start); [SLURM]'s keys as
    ``SLURM.partition``."""

    def line_of(self, key: str) -> Optional[int]:
        return self.key_lines.get(key)


@dataclass(frozen=True)
class QueueEntry:
    """One line of a queue: a script, relative to models_dir, and optionally one version."""

    script: str
    version: Optional[str]
    line: Optional[int]

    def __str__(self) -> str:
        return self.script if self.version is None else f"{self.script}:{self.version}"


@dataclass(frozen=True)
class QueueConfig:
    """models.config or models_test.config, validated."""

    file: str
    use_blacklist: bool
    whitelist: Tuple[QueueEntry, ...]
    blacklist: Tuple[QueueEntry, ...]


def parse_toml(text: str, file: str) -> Dict[str, Any]:
    """Parse TOML, turning a syntax error into a ConfigError at its line (and, for a file in
    the original INI format, the same in TOML)."""
    try:
        return parse_toml_text(text, file)
    except ConfigError as exc:
        raise ConfigError(exc.file, exc.message + _ini_hint(text, file), exc.line) from None


def _ini_hint(text: str, file: str) -> str:
    if not looks_like_ini(text):
        return ""
    try:
        converted = ini_to_toml(text, file)
    except ConfigError:
        converted = ""
    hint = ". This is the original package's INI format; mlpipeline reads TOML."
    if converted:
        hint += f" The same in TOML:\n\n{converted}\n"
    return hint + "`mlpipeline migrate-config` rewrites the three files as TOML, keeping .bak copies"


def key_line(text: str, table: Optional[str], key: Optional[str] = None) -> Optional[int]:
    """The line where ``key`` is set in ``[table]`` (or the table header itself), 1-based."""
    current: Optional[str] = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]", line)  # [table] or [[array of tables]]
        if header:
            current = header.group(1).strip().strip("\"'")
            if key is None and current == table:
                return number
            continue
        if key is not None and current == table:
            match = re.match(r"""^["']?([^"'=\s]+)["']?\s*=""", line)
            if match and match.group(1) == key:
                return number
    return None


def _value_lines(text: str) -> Dict[str, int]:
    """Each quoted string in ``text`` and the first line it is on: one pass, for queues of
    thousands of entries."""
    lines: Dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        for match in re.finditer(r'"([^"\\]*)"|\'([^\']*)\'', raw):
            lines.setdefault(match.group(1) if match.group(1) is not None else match.group(2), number)
    return lines


def missing_queue_message(path: Path) -> str:
    """What to say when the queue file ``path`` does not exist."""
    old = path.with_name(POST8_QUEUES.get(path.name, path.name))
    if old != path and old.exists():
        return (
            f"not found ({path}); {old.name} is release 1.1a3.post8's name for it: "
            f"`mlpipeline migrate-config` writes {path.name} from it"
        )
    return f"not found ({path}); create it with a [WHITELISTED_MODELS] scripts list"


def _unknown(file: str, text: str, table: Optional[str], key: str, known: List[str], what: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    if key in POST8_KEYS:
        close = [POST8_KEYS[key]]  # release 1.1a3.post8's name for it
    kind, _, rest = what.partition(" ")
    plural = f"{kind}s {rest}".strip()  # "key of [MLP]": "the keys of [MLP] are"
    hint = f"; did you mean '{close[0]}'?" if close else f"; the {plural} are: {', '.join(known)}"
    if table is None:
        line = key_line(text, key) or key_line(text, None, key)
    else:
        line = key_line(text, table, key)
    return ConfigError(file, f"'{key}' is not a {what}{hint}", line)


def _check_tables(data: Dict[str, Any], file: str, text: str, known: List[str]) -> None:
    for name, value in data.items():
        if name not in known:
            raise _unknown(file, text, None, name, known, "table")
        if not isinstance(value, dict):
            raise ConfigError(file, f"'{name}' must be a table, [{name}]", key_line(text, None, name) or key_line(text, name))


def _typed(file: str, text: str, table: str, data: Dict[str, Any], key: str, kind: Any, kind_name: str) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            file, f"'{key}' must be {kind_name}, not {type(value).__name__} {value!r}", key_line(text, table, key)
        )
    return value


def _project_above(folder: Path) -> str:
    """``; ../mlp.config exists: ...`` when a folder above ``folder`` is a project, else ''."""
    try:
        start = folder.resolve()
    except (OSError, RuntimeError):
        return ""
    for above in list(start.parents)[:8]:
        if (above / PROJECT_CONFIG).is_file():
            relative = os.path.relpath(above / PROJECT_CONFIG, start)
            return f"; {relative} exists: run mlpipeline in {above}, or give -C {os.path.relpath(above, start)}"
    return ""


def load_project_config(project_dir: Path) -> ProjectConfig:
    """Read and check ``mlp.config`` in ``project_dir``."""
    path = project_dir / PROJECT_CONFIG
    file = PROJECT_CONFIG
    try:
        text = config_text(read_config_bytes(path), file)
    except FileNotFoundError:
        raise ConfigError(
            str(path), "not found: mlpipeline works in a project folder holding mlp.config (or give -C DIR)" + _project_above(project_dir)
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read ({exc.strerror or exc})") from None
    data = parse_toml(text, file)
    _check_tables(data, file, text, ["MLP", "SLURM", "EARLY_STOPPING"])
    if "MLP" not in data:
        raise ConfigError(file, 'has no [MLP] table; it needs at least: [MLP] models_dir = "models"')
    mlp = data["MLP"]
    known = list(MLP_KEYS)
    for key in mlp:
        if key not in known:
            raise _unknown(file, text, "MLP", key, known, "key of [MLP]")
    if "models_dir" not in mlp:
        raise ConfigError(file, "[MLP] has no 'models_dir': name the folder of the model scripts", key_line(text, "MLP"))
    lines = {key: line for key in mlp if (line := key_line(text, "MLP", key)) is not None}
    values: Dict[str, Any] = {}
    for name, key in MLP_KEYS.items():
        if name not in mlp:
            values[name] = key.default
            continue
        try:
            values[name] = key.check(name, mlp[name])
        except KeyProblem as problem:
            raise ConfigError(file, str(problem), lines.get(name)) from None
    for name, leave_out in (("models_dir", '"." for the project\'s folder itself'), ("outputs_dir", "leave the key out for <models_dir>/outputs")):
        if isinstance(values[name], str) and not values[name].strip():
            raise ConfigError(file, f"{name} is empty: name a folder ({leave_out})", lines.get(name))
    models_dir = project_dir / values.pop("models_dir")
    try:
        is_folder = models_dir.is_dir()
    except OSError as exc:  # a name too long for the file system, say
        raise ConfigError(file, f"models_dir cannot be looked at ({exc.strerror or exc})", lines.get("models_dir")) from None
    if not is_folder:
        raise ConfigError(file, f"models_dir '{mlp['models_dir']}' is not a folder ({models_dir})", lines.get("models_dir"))
    outputs = values.pop("outputs_dir")
    outputs_dir = models_dir / "outputs" if outputs is None else project_dir / outputs
    if values["tracking_uri"] is not None and values["tracking"] != "mlflow":
        raise ConfigError(file, TRACKING_URI_NEEDS, lines.get("tracking_uri"))
    if values["tracking_dir"] is not None:
        if values["tracking"] != "tensorboard":
            raise ConfigError(file, TRACKING_DIR_NEEDS, lines.get("tracking_dir"))
        values["tracking_dir"] = resolved(project_dir / values["tracking_dir"], file, "tracking_dir", lines.get("tracking_dir"))
    slurm = _slurm_settings(data.get("SLURM", {}), file, text, lines)
    early_stopping = _early_stopping(data["EARLY_STOPPING"], file, text, lines) if "EARLY_STOPPING" in data else None
    models_dir = resolved(models_dir, file, "models_dir", lines.get("models_dir"))
    outputs_dir = resolved(outputs_dir, file, "outputs_dir", lines.get("outputs_dir"))
    if outputs is not None and _in_the_way(outputs_dir):
        raise ConfigError(file, f"outputs_dir '{outputs}' is not a folder ({outputs_dir}); name a folder, or a new one", lines.get("outputs_dir"))
    for what, folder in (("the project's folder", project_dir), ("models_dir", models_dir), ("outputs_dir", outputs_dir)):
        shown = surrogates_escaped(str(folder))
        line = lines.get(what) if what != "the project's folder" else None
        if shown != str(folder):
            # Every record names its model_dir: a path of undecodable bytes would make each
            # record a line no reader can take.
            raise ConfigError(file, f"{what} {shown} is not UTF-8 text; the records name it, so give the folder a name in UTF-8", line)
        if any(ord(char) < 32 or ord(char) == 127 for char in shown):
            # A line break in it would split the log's lines that name it.
            raise ConfigError(file, f"{what} {shown!r} holds a control character; the records name it, so rename the folder", line)
    return ProjectConfig(
        project_dir=project_dir,
        models_dir=models_dir,
        outputs_dir=outputs_dir,
        slurm=slurm,
        early_stopping=early_stopping,
        key_lines=lines,
        **values,
    )


def _in_the_way(folder: Path) -> bool:
    """Whether something that is no folder (a file, a dangling link) has the folder's name."""
    try:
        return os.path.lexists(folder) and not folder.is_dir()
    except OSError:
        return False  # a name the file system refuses: making the folder says so


def _slurm_settings(table: Dict[str, Any], file: str, text: str, lines: Dict[str, int]) -> SlurmSettings:
    """[SLURM], checked; each key's line goes into ``lines`` as ``SLURM.<key>``."""
    return SlurmSettings(**_table_values("SLURM", SLURM_KEYS, table, file, text, lines))


def _early_stopping(table: Dict[str, Any], file: str, text: str, lines: Dict[str, int]) -> EarlyStoppingSettings:
    """[EARLY_STOPPING], checked; each key's line goes into ``lines`` as ``EARLY_STOPPING.<key>``."""
    return EarlyStoppingSettings(**_table_values("EARLY_STOPPING", EARLY_STOPPING_KEYS, table, file, text, lines))


def _table_values(
    name: str, keys: Mapping[str, Any], table: Dict[str, Any], file: str, text: str, lines: Dict[str, int]
) -> Dict[str, Any]:
    """The keys given in the optional table ``[name]``, each checked; a key unknown, or one
    required and missing, is a ConfigError at its line. Each key's line goes into ``lines``
    as ``<name>.<key>``."""
    known = list(keys)
    for key in table:
        if key not in known:
            raise _unknown(file, text, name, key, known, f"key of [{name}]")
    required = [key for key in known if keys[key].default is REQUIRED]
    for key in required:
        if key not in table:
            needs = " and ".join(f"'{each}'" for each in required)
            raise ConfigError(file, f"[{name}] has no '{key}'; it needs {needs}", key_line(text, name))
    values: Dict[str, Any] = {}
    for key in table:
        line = key_line(text, name, key)
        if line is not None:
            lines[f"{name}.{key}"] = line
        try:
            values[key] = keys[key].check(key, table[key])
        except KeyProblem as problem:
            raise ConfigError(file, str(problem), line) from None
    return values


def parse_queue_config(text: str, file: str, models_dir: Path) -> QueueConfig:
    """Check the text of a queue file; entries must stay inside ``models_dir``."""
    data = parse_toml(text, file)
    tables = ["MLP", "WHITELISTED_MODELS", "BLACKLISTED_MODELS"]
    _check_tables(data, file, text, tables)
    mlp = data.get("MLP", {})
    use_blacklist = False
    for key in mlp:
        if key != "use_blacklist":
            raise _unknown(file, text, "MLP", key, ["use_blacklist"], "key of [MLP]")
    if "use_blacklist" in mlp:
        use_blacklist = _typed(file, text, "MLP", mlp, "use_blacklist", bool, "true or false")
    lists = {}
    value_lines = _value_lines(text)
    needed = "BLACKLISTED_MODELS" if use_blacklist else "WHITELISTED_MODELS"
    if needed not in data:
        # A file cut short by a save in progress parses and queues nothing: said, not obeyed.
        mode = "use_blacklist = true" if use_blacklist else "use_blacklist = false"
        raise ConfigError(file, f"has no [{needed}] table, which {mode} runs by; write scripts = [] for an empty list")
    for table in tables[1:]:
        section = data.get(table)
        if section is None:
            lists[table] = ()
            continue
        for key in section:
            if key != "scripts":
                raise _unknown(file, text, table, key, ["scripts"], f"key of [{table}]")
        if "scripts" not in section:
            raise ConfigError(
                file, f"[{table}] has no 'scripts' list; write scripts = [] for an empty one", key_line(text, table)
            )
        scripts = section["scripts"]
        if not isinstance(scripts, list):
            raise ConfigError(
                file,
                f"'scripts' must be a list of strings, like [\"model.py\"], not {type(scripts).__name__}",
                key_line(text, table, "scripts"),
            )
        lists[table] = tuple(_entry(file, text, table, item, models_dir, value_lines) for item in scripts)
    return QueueConfig(
        file=file,
        use_blacklist=use_blacklist,
        whitelist=lists["WHITELISTED_MODELS"],
        blacklist=lists["BLACKLISTED_MODELS"],
    )


def _entry(file: str, text: str, table: str, item: Any, models_dir: Path, value_lines: Dict[str, int]) -> QueueEntry:
    if not isinstance(item, str):
        raise ConfigError(
            file, f"[{table}] scripts holds {item!r}, which is not a string", key_line(text, table, "scripts")
        )
    return parse_entry(item, models_dir, file, value_lines.get(item) or key_line(text, table, "scripts"))


NAME_MAX = 255
"""The longest file name, in bytes, that Linux file systems hold."""


def resolved(path: Path, file: str, what: str, line: Optional[int] = None) -> Path:
    """``path`` with its links followed; a link that loops (or a path the system refuses) is a
    ConfigError naming ``what`` (Python 3.11 raises RuntimeError for a loop, later ones OSError)."""
    try:
        return path.resolve()
    except RuntimeError:
        raise ConfigError(file, f"{what}: {path} is a symbolic link that loops", line) from None
    except OSError as exc:
        raise ConfigError(file, f"{what}: {path} cannot be followed ({exc.strerror or exc})", line) from None


def parse_entry(item: str, models_dir: Path, file: str, line: Optional[int] = None) -> QueueEntry:
    """``"script.py"`` or ``"script.py:version"``, relative to models_dir and refused outside it."""
    problem = name_problem(item)
    if problem is not None:
        raise ConfigError(file, f"entry {shown_name(item)} {problem}, which no script or version name may hold", line)
    script, colon, version = item.partition(":")
    script = script.strip()
    if not script or (colon and not version):
        raise ConfigError(file, f"'{item}' is not an entry; write \"script.py\" or \"script.py:version\"", line)
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in script.split("/")):
        raise ConfigError(file, f"entry {shown_name(item)} names a file of more than {NAME_MAX} bytes, which no file system holds", line)
    target = resolved(models_dir / script, file, f"entry {shown_name(item)}", line)
    try:
        relative = target.relative_to(models_dir)
    except ValueError:
        raise ConfigError(file, f"'{item}' is outside models_dir ({models_dir}); entries are relative to it", line) from None
    return QueueEntry(script=relative.as_posix(), version=version or None, line=line)


def read_queue_config(path: Path, file: str, models_dir: Path) -> QueueConfig:
    """Read and check a queue file; a missing or unreadable file is a ConfigError too."""
    try:
        text = config_text(read_config_bytes(path), file)
    except FileNotFoundError:
        raise ConfigError(file, missing_queue_message(path)) from None
    except OSError as exc:
        raise ConfigError(file, f"cannot be read ({exc.strerror or exc})") from None
    return parse_queue_config(text, file, models_dir)
