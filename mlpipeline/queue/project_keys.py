"""The keys of mlp.config's [MLP] table, each declared once: its name, its default, how its
value is checked, and what it is in TOML. The loader (config.py), ProjectConfig's defaults and
the INI migration (ini.py) all read this table.

A check takes the value as TOML gave it and returns it as ProjectConfig holds it, or raises
:class:`KeyProblem` saying what is wrong; the loader adds the file and the line.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

ON_SCRIPT_CHANGE = ("rerun", "keep")
EXECUTORS = ("local", "ray", "slurm")
TRACKERS = ("mlflow", "tensorboard", "wandb")


class KeyProblem(ValueError):
    """A value that a key does not take; the message says what it must be."""


class ConfigKey(NamedTuple):
    name: str
    default: Any
    check: Callable[[str, Any], Any]
    toml: Optional[str] = None
    """What the value is in TOML, for keys an INI file of the original package may hold
    (``string``, ``integer``, ``number``); None for keys only TOML files have."""


def _typed(key: str, value: Any, kind: Any, kind_name: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise KeyProblem(f"'{key}' must be {kind_name}, not {type(value).__name__} {value!r}")
    _no_nul(key, value)
    return value


def _no_nul(key: str, *values: Any) -> None:
    """A NUL character, which TOML lets a string hold, can be in no path, name or command."""
    if any(isinstance(value, str) and "\x00" in value for value in values):
        raise KeyProblem(f"'{key}' holds a NUL character (\\u0000), which no path, name or command may")


def _string(key: str, value: Any) -> str:
    return _typed(key, value, str, "a string")


def _flag(key: str, value: Any) -> bool:
    return _typed(key, value, bool, "true or false")


def _choice(*choices: str) -> Callable[[str, Any], str]:
    said = " or ".join(f'"{choice}"' for choice in choices)

    def check(key: str, value: Any) -> str:
        if _string(key, value) not in choices:
            import difflib

            close = difflib.get_close_matches(value.lower(), choices, n=1)
            hint = f"; did you mean \"{close[0]}\"?" if close else ""
            raise KeyProblem(f"{key} must be {said}, not {value!r}{hint}")
        return value

    return check


def _timeout(key: str, value: Any) -> float:
    if not 0 <= _typed(key, value, (int, float), "a number of seconds") < float("inf"):  # NaN neither
        raise KeyProblem(f"{key} must be 0 (none) or a finite number of seconds, not {value}")
    return float(value)


def _positive_seconds(key: str, value: Any) -> float:
    if not 0 < _typed(key, value, (int, float), "a number of seconds") < float("inf"):
        raise KeyProblem(f"{key} must be a finite number of seconds more than 0, not {value}")
    return float(value)


def _share_of_memory(key: str, value: Any) -> float:
    if not 0 <= _typed(key, value, (int, float), "a share of a GPU's memory, such as 0.1") <= 1:
        raise KeyProblem(f"{key} must be a share of a GPU's memory from 0 to 1, such as 0.1, not {value}")
    return float(value)


def _at_least(least: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if _typed(key, value, int, "a whole number") < least:
            raise KeyProblem(f"{key} must be {least} or more, not {value}")
        return value

    return check


def _gpus(key: str, value: Any) -> Optional[Tuple[str, ...]]:
    valid_list = isinstance(value, list) and all(
        (isinstance(item, int) and not isinstance(item, bool) and item >= 0) or (isinstance(item, str) and item) for item in value
    )
    if value != "auto" and not valid_list:
        raise KeyProblem(f'gpus must be "auto" or a list of GPU ids such as [0, 1], not {value!r}')
    _no_nul(key, *(value if valid_list else ()))
    if not valid_list:
        return None  # "auto": detected at start
    for item in value:
        if not _GPU_ID.fullmatch(str(item)):
            raise KeyProblem(
                f"gpus: {item!r} is no GPU id; give an index (0 or \"0\") or a UUID as nvidia-smi -L shows it "
                "(GPU-..., MIG-...), one GPU an item"
            )
    # An index given as a string is the same GPU as the number: "01" and 1 are one GPU.
    gpus = tuple(str(int(item)) if isinstance(item, int) or item.isdigit() else item for item in value)
    if len(set(gpus)) != len(gpus):
        raise KeyProblem(f"gpus lists a GPU twice: {value!r}")
    return gpus


GPU_ID = re.compile(r"[0-9]{1,9}|(?:GPU|MIG)-[0-9A-Za-z/-]{1,200}")
"""What CUDA_VISIBLE_DEVICES takes for one GPU: its index, or its UUID (a MIG instance's too)."""
_GPU_ID = GPU_ID


def _modules(key: str, value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and re.fullmatch(r"[\w.]+", item) for item in value):
        raise KeyProblem(f'preload must be a list of module names such as ["torch"], not {value!r}')
    return tuple(value)


def _command(key: str, value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value) or (value and not value[0]):
        raise KeyProblem(f'on_version_end must be a command as a list of strings, such as ["notify-send", "done"], not {value!r}')
    _no_nul(key, *value)
    return tuple(value)


def _ray_address(key: str, value: Any) -> str:
    if not _string(key, value).strip():
        raise KeyProblem('ray_address must be a cluster address such as "10.0.0.5:6379", or "auto"')
    return value


def _tracking_uri(key: str, value: Any) -> str:
    if not _string(key, value).strip():
        raise KeyProblem(TRACKING_URI_NEEDS)
    return value


def _tracking_dir(key: str, value: Any) -> str:
    if not _string(key, value).strip():
        raise KeyProblem(TRACKING_DIR_NEEDS)
    return value


TRACKING_URI_NEEDS = 'tracking_uri is MLflow\'s store, such as "sqlite:///mlflow.db" or "http://host:5000", with tracking = "mlflow"'
TRACKING_DIR_NEEDS = 'tracking_dir is the folder of TensorBoard\'s event files, such as "runs", with tracking = "tensorboard"'

REQUIRED = object()
"""The default of a key that must be given."""

MLP_KEYS: Dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("models_dir", REQUIRED, _string, "string"),
        ConfigKey("outputs_dir", None, _string, "string"),  # None: <models_dir>/outputs
        ConfigKey("on_script_change", "rerun", _choice(*ON_SCRIPT_CHANGE), "string"),
        ConfigKey("version_timeout", 0.0, _timeout, "number"),
        ConfigKey("retries", 0, _at_least(0), "integer"),
        ConfigKey("workers", 1, _at_least(1), "integer"),
        ConfigKey("gpus", None, _gpus),  # None: "auto", detected at start
        ConfigKey("gpu_busy_memory", 0.1, _share_of_memory),  # a GPU whose memory others hold beyond this share gets no version
        ConfigKey("preload", (), _modules),
        ConfigKey("preload_scripts", False, _flag),  # each script imported once, its versions forked from it
        ConfigKey("on_version_end", (), _command),  # a command and its arguments; () = none
        ConfigKey("listing_timeout", 300.0, _positive_seconds),  # seconds a script's import may take while listed
        ConfigKey("executor", "local", _choice(*EXECUTORS)),  # "local" (this host), "ray" or "slurm" (a cluster)
        ConfigKey("ray_address", None, _ray_address),  # None: RAY_ADDRESS, else "auto"
        ConfigKey("tracking", None, _choice(*TRACKERS)),  # a tracker fed with every run
        ConfigKey("tracking_uri", None, _tracking_uri),  # MLflow's; None: sqlite:///<outputs>/mlflow.db
        ConfigKey("tracking_dir", None, _tracking_dir),  # TensorBoard's; None: <model_dir>/tensorboard
    )
}


def default(name: str) -> Any:
    """The default of the [MLP] key ``name``, as ProjectConfig holds it."""
    return MLP_KEYS[name].default


_SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|\d+-\d+")


def _slurm_time(key: str, value: Any) -> str:
    """A time limit as sbatch's --time takes it: minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if not isinstance(value, str) or not _SLURM_TIME.fullmatch(value.strip()):
        raise KeyProblem(f'time must be a time limit as sbatch takes it, such as "04:00:00" or "1-00:00:00", not {value!r}')
    return value.strip()


def _arguments(key: str, value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise KeyProblem(f'sbatch_args must be a list of sbatch options such as ["--account=lab", "--mem=16G"], not {value!r}')
    _no_nul(key, *value)
    return tuple(value)


SLURM_KEYS: Dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("partition", None, _string),  # None: the cluster's default partition
        ConfigKey("time", None, _slurm_time),  # None: the partition's default time limit
        ConfigKey("sbatch_args", (), _arguments),  # passed to sbatch as written
    )
}
"""The keys of mlp.config's optional [SLURM] table, for ``executor = "slurm"``."""


EARLY_STOPPING_RULES = ("asha", "median")


def _metric_name(key: str, value: Any) -> str:
    if not _string(key, value).strip():
        raise KeyProblem("metric must name a metric the versions report() or return from evaluate_model, such as \"loss\"")
    if any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in value):
        raise KeyProblem(f"metric {value!r} holds a control character; name the metric as the versions report it, such as \"loss\"")
    return value


EARLY_STOPPING_KEYS: Dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey("metric", REQUIRED, _metric_name),  # what versions are judged by
        ConfigKey("mode", "min", _choice("min", "max")),  # lower is better, or higher
        ConfigKey("rule", "asha", _choice(*EARLY_STOPPING_RULES)),  # successive halving, or the median rule
        ConfigKey("grace_steps", REQUIRED, _at_least(1)),  # the first rung: no version is judged before
        ConfigKey("reduction_factor", 3, _at_least(2)),  # asha: the best 1/reduction_factor go on
    )
}
"""The keys of mlp.config's optional [EARLY_STOPPING] table (docs/early-stopping.md)."""


def seconds_of_slurm_time(value: str) -> int:
    """How many seconds a --time value is (a value SLURM_KEYS has checked)."""
    days, _, clock = value.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 1:  # minutes
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # MM:SS
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
