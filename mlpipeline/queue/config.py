"""The three TOML files: mlp.config (how to run) and the two queues (what to run).

Every problem is a :class:`ConfigError` that names the file, the line and the key.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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

ON_SCRIPT_CHANGE = ("rerun", "keep")
EXECUTORS = ("local", "ray")
TRACKERS = ("mlflow", "tensorboard")


@dataclass(frozen=True)
class ProjectConfig:
    """mlp.config, validated: where the scripts are and how to run them."""

    project_dir: Path
    models_dir: Path
    outputs_dir: Path
    on_script_change: str = "rerun"
    version_timeout: float = 0.0
    retries: int = 0
    workers: int = 1
    gpus: Optional[Tuple[str, ...]] = None  # None: "auto", detected at start
    preload: Tuple[str, ...] = ()
    on_version_end: Tuple[str, ...] = ()  # a command and its arguments; () = none
    listing_timeout: float = 300.0  # seconds a script's import may take while its versions are listed
    executor: str = "local"  # where versions run: "local" (this host) or "ray" (a Ray cluster)
    ray_address: Optional[str] = None  # with executor = "ray"; None: RAY_ADDRESS, else "auto"
    tracking: Optional[str] = None  # "mlflow" or "tensorboard": a tracker fed with every run
    tracking_uri: Optional[str] = None  # with mlflow; None: sqlite:///<outputs>/mlflow.db
    tracking_dir: Optional[Path] = None  # with tensorboard; None: <model_dir>/tensorboard


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
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
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
            raise ConfigError(file, f"'{name}' must be a table, [{name}]", key_line(text, None, name))


def _typed(file: str, text: str, table: str, data: Dict[str, Any], key: str, kind: Any, kind_name: str) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(
            file, f"'{key}' must be {kind_name}, not {type(value).__name__} {value!r}", key_line(text, table, key)
        )
    return value


def load_project_config(project_dir: Path) -> ProjectConfig:
    """Read and check ``mlp.config`` in ``project_dir``."""
    path = project_dir / PROJECT_CONFIG
    file = PROJECT_CONFIG
    try:
        text = config_text(read_config_bytes(path), file)
    except FileNotFoundError:
        raise ConfigError(
            str(path), "not found: mlpipeline works in a project folder holding mlp.config (or give -C DIR)"
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc}") from None
    data = parse_toml(text, file)
    _check_tables(data, file, text, ["MLP"])
    if "MLP" not in data:
        raise ConfigError(file, 'has no [MLP] table; it needs at least: [MLP] models_dir = "models"')
    mlp = data["MLP"]
    known = [
        "models_dir", "outputs_dir", "on_script_change", "version_timeout", "retries", "workers", "gpus", "preload",
        "on_version_end", "listing_timeout", "executor", "ray_address", "tracking", "tracking_uri", "tracking_dir",
    ]
    for key in mlp:
        if key not in known:
            raise _unknown(file, text, "MLP", key, known, "key of [MLP]")
    if "models_dir" not in mlp:
        raise ConfigError(file, "[MLP] has no 'models_dir': name the folder of the model scripts", key_line(text, "MLP"))
    models_dir = project_dir / _typed(file, text, "MLP", mlp, "models_dir", str, "a string")
    if not models_dir.is_dir():
        raise ConfigError(
            file, f"models_dir '{mlp['models_dir']}' is not a folder ({models_dir})", key_line(text, "MLP", "models_dir")
        )
    outputs_dir = models_dir / "outputs"
    if "outputs_dir" in mlp:
        outputs_dir = project_dir / _typed(file, text, "MLP", mlp, "outputs_dir", str, "a string")
    on_change = "rerun"
    if "on_script_change" in mlp:
        on_change = _typed(file, text, "MLP", mlp, "on_script_change", str, "a string")
        if on_change not in ON_SCRIPT_CHANGE:
            raise ConfigError(
                file,
                f"on_script_change must be \"rerun\" or \"keep\", not {on_change!r}",
                key_line(text, "MLP", "on_script_change"),
            )
    version_timeout = 0.0
    if "version_timeout" in mlp:
        version_timeout = _typed(file, text, "MLP", mlp, "version_timeout", (int, float), "a number of seconds")
        if version_timeout < 0:
            raise ConfigError(
                file, f"version_timeout must be 0 (none) or more seconds, not {version_timeout}", key_line(text, "MLP", "version_timeout")
            )
    listing_timeout = 300.0
    if "listing_timeout" in mlp:
        listing_timeout = _typed(file, text, "MLP", mlp, "listing_timeout", (int, float), "a number of seconds")
        if not 0 < listing_timeout < float("inf"):
            raise ConfigError(
                file, f"listing_timeout must be more than 0 seconds, not {listing_timeout}", key_line(text, "MLP", "listing_timeout")
            )
    retries = 0
    if "retries" in mlp:
        retries = _typed(file, text, "MLP", mlp, "retries", int, "a whole number")
        if retries < 0:
            raise ConfigError(file, f"retries must be 0 or more, not {retries}", key_line(text, "MLP", "retries"))
    workers = 1
    if "workers" in mlp:
        workers = _typed(file, text, "MLP", mlp, "workers", int, "a whole number")
        if workers < 1:
            raise ConfigError(file, f"workers must be 1 or more, not {workers}", key_line(text, "MLP", "workers"))
    gpus: Optional[Tuple[str, ...]] = None
    if "gpus" in mlp:
        value = mlp["gpus"]
        valid_list = isinstance(value, list) and all(
            (isinstance(item, int) and not isinstance(item, bool) and item >= 0) or (isinstance(item, str) and item)
            for item in value
        )
        if value != "auto" and not valid_list:
            raise ConfigError(
                file, f'gpus must be "auto" or a list of GPU ids such as [0, 1], not {value!r}', key_line(text, "MLP", "gpus")
            )
        if valid_list:
            gpus = tuple(str(item) for item in value)
            if len(set(gpus)) != len(gpus):
                raise ConfigError(file, f"gpus lists a GPU twice: {value!r}", key_line(text, "MLP", "gpus"))
    preload: Tuple[str, ...] = ()
    if "preload" in mlp:
        value = mlp["preload"]
        if not isinstance(value, list) or not all(isinstance(item, str) and re.fullmatch(r"[\w.]+", item) for item in value):
            raise ConfigError(
                file, f'preload must be a list of module names such as ["torch"], not {value!r}', key_line(text, "MLP", "preload")
            )
        preload = tuple(value)
    on_version_end: Tuple[str, ...] = ()
    if "on_version_end" in mlp:
        value = mlp["on_version_end"]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value) or (value and not value[0]):
            raise ConfigError(
                file,
                f'on_version_end must be a command as a list of strings, such as ["notify-send", "done"], not {value!r}',
                key_line(text, "MLP", "on_version_end"),
            )
        on_version_end = tuple(value)
    executor = "local"
    if "executor" in mlp:
        executor = _typed(file, text, "MLP", mlp, "executor", str, "a string")
        if executor not in EXECUTORS:
            raise ConfigError(
                file, f'executor must be "local" or "ray", not {executor!r}', key_line(text, "MLP", "executor")
            )
    ray_address: Optional[str] = None
    if "ray_address" in mlp:
        ray_address = _typed(file, text, "MLP", mlp, "ray_address", str, "a string")
        if not ray_address.strip():
            raise ConfigError(
                file, 'ray_address must be a cluster address such as "10.0.0.5:6379", or "auto"', key_line(text, "MLP", "ray_address")
            )
    tracking, tracking_uri, tracking_dir = _tracking(file, text, mlp, project_dir)
    return ProjectConfig(
        project_dir=project_dir,
        models_dir=models_dir.resolve(),
        outputs_dir=outputs_dir.resolve(),
        on_script_change=on_change,
        version_timeout=float(version_timeout),
        retries=retries,
        workers=workers,
        gpus=gpus,
        preload=preload,
        on_version_end=on_version_end,
        listing_timeout=float(listing_timeout),
        executor=executor,
        ray_address=ray_address,
        tracking=tracking,
        tracking_uri=tracking_uri,
        tracking_dir=tracking_dir,
    )


def _tracking(file: str, text: str, mlp: Dict[str, Any], project_dir: Path) -> Tuple[Optional[str], Optional[str], Optional[Path]]:
    """``tracking``, with ``tracking_uri`` (MLflow's) or ``tracking_dir`` (TensorBoard's)."""
    tracking = None
    if "tracking" in mlp:
        tracking = _typed(file, text, "MLP", mlp, "tracking", str, "a string")
        if tracking not in TRACKERS:
            raise ConfigError(file, f'tracking must be "mlflow" or "tensorboard", not {tracking!r}', key_line(text, "MLP", "tracking"))
    uri = None
    if "tracking_uri" in mlp:
        uri = _typed(file, text, "MLP", mlp, "tracking_uri", str, "a string")
        if tracking != "mlflow" or not uri.strip():
            raise ConfigError(
                file, 'tracking_uri is MLflow\'s store, such as "sqlite:///mlflow.db" or "http://host:5000", with tracking = "mlflow"',
                key_line(text, "MLP", "tracking_uri"),
            )
    folder = None
    if "tracking_dir" in mlp:
        value = _typed(file, text, "MLP", mlp, "tracking_dir", str, "a string")
        if tracking != "tensorboard" or not value.strip():
            raise ConfigError(
                file, 'tracking_dir is the folder of TensorBoard\'s event files, such as "runs", with tracking = "tensorboard"',
                key_line(text, "MLP", "tracking_dir"),
            )
        folder = (project_dir / value).resolve()
    return tracking, uri, folder


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


def parse_entry(item: str, models_dir: Path, file: str, line: Optional[int] = None) -> QueueEntry:
    """``"script.py"`` or ``"script.py:version"``, relative to models_dir and refused outside it."""
    problem = name_problem(item)
    if problem is not None:
        raise ConfigError(file, f"entry {shown_name(item)} {problem}, which no script or version name may hold", line)
    script, colon, version = item.partition(":")
    script = script.strip()
    if not script or (colon and not version):
        raise ConfigError(file, f"'{item}' is not an entry; write \"script.py\" or \"script.py:version\"", line)
    target = (models_dir / script).resolve()
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
        raise ConfigError(file, f"cannot be read: {exc}") from None
    return parse_queue_config(text, file, models_dir)
