"""What the worker does differently for scripts written for the original package's 1.x
releases: the hook they expect to be called with two arguments, the name they gave MODEL,
and what to say when they use TensorFlow 1 or the original's pipeline internals, which
cannot run now.
"""
from __future__ import annotations

import re
import sys
import types
from typing import Any, Callable, Optional, Tuple

MODEL_NAMES = ("MODEL", "EXPERIMENT")
"""What a script sets: MODEL, or EXPERIMENT in scripts of release 1.1a3.post8."""


def pre_execution_arguments(hook: Callable[..., Any], version: Any, model_dir: str, exec_mode: str) -> Tuple[Any, ...]:
    """The arguments for ``hook``: all three, or ``(version, model_dir)`` for an override
    written as ``pre_execution_hook(self, version, model_dir)``, which every 1.x release called."""
    takes = _takes_three_arguments(hook)
    if takes is None:
        import inspect  # only for what is not a plain method (every child would pay 9 ms for it)

        try:
            inspect.signature(hook).bind(version, model_dir, exec_mode)
        except TypeError:
            takes = False
        except ValueError:
            takes = True  # no signature to read (a builtin): the documented call
        else:
            takes = True
    return (version, model_dir, exec_mode) if takes else (version, model_dir)


_VARARGS = 0x04  # CO_VARARGS


def _takes_three_arguments(hook: Callable[..., Any]) -> Optional[bool]:
    """Whether three positional arguments bind to ``hook``, read from its code when it is a
    plain function or method (what inspect would say); None when only inspect can tell."""
    function, given = hook, 3
    if isinstance(hook, types.MethodType):
        function, given = hook.__func__, 4
    if not isinstance(function, types.FunctionType) or hasattr(function, "__wrapped__"):
        return None
    code = function.__code__
    defaults = len(function.__defaults__ or ())
    keyword_only = code.co_kwonlyargcount - len(function.__kwdefaults__ or {})
    if keyword_only > 0:
        return False
    if given > code.co_argcount:
        return bool(code.co_flags & _VARARGS)
    return code.co_argcount - given <= defaults


_MISSING_ATTRIBUTE = re.compile(r"module '(tensorflow[\w.]*)' has no attribute '(\w+)'")
_MISSING_MODULE = re.compile(r"No module named '(tensorflow\.(?:contrib|estimator)[\w.]*)'")
_REMOVED = {
    "contrib": "tf.contrib was removed in TensorFlow 2.0",
    "estimator": "tf.estimator was removed in TensorFlow 2.16",
}


_PIPELINE_INTERNALS = ("set_logger", "VersionLog", "use_mlflow", "log_special_tokens", "_collect_related_files")
_MISSING_NAME = re.compile(r"cannot import name '(\w+)' from 'mlpipeline\.utils'")


def old_code_advice(exc: BaseException) -> Optional[str]:
    """What to change when ``exc`` comes from code of the original's time that cannot run now:
    TensorFlow 1, or a part of the original's pipeline a script imported; else None."""
    text = str(exc)
    if isinstance(exc, ImportError):
        name = _MISSING_NAME.search(text)
        if name and name.group(1) in _PIPELINE_INTERNALS:
            return f"{name.group(1)} was part of the original package's pipeline, not of its script API; remove the import"
        if "No module named 'mlpipeline.mlp_helper'" in text:
            return "mlp_helper was the original's first name for mlpipeline.helper; import from mlpipeline.helper"
        private = re.search(r"No module named '(mlpipeline\.(?:utils|helper))\._\w+'", text)
        if private:
            return f"the original's private modules are gone; import the same names from {private.group(1)}"
    missing = _MISSING_MODULE.search(text) if isinstance(exc, ImportError) else None
    if missing:
        part = missing.group(1).split(".")[1]
        return f"{_REMOVED[part]}; port this code to tf.keras (mlpipeline.tensorflow.KerasModel, docs/frameworks.md)"
    missing = _MISSING_ATTRIBUTE.search(text) if isinstance(exc, AttributeError) else None
    if missing:
        name = missing.group(2)
        if name in _REMOVED:
            return f"{_REMOVED[name]}; port this code to tf.keras (mlpipeline.tensorflow.KerasModel, docs/frameworks.md)"
        if _in_compat_v1(name):
            return (
                f"tf.{name} is TensorFlow 1 API: write tf.compat.v1.{name} and call "
                "tf.compat.v1.disable_eager_execution() at the top of the script, or port this code to tf.keras"
            )
        return None
    if isinstance(exc, RuntimeError) and "eager execution" in text:
        return "TensorFlow 1 graph code needs tf.compat.v1.disable_eager_execution() at the top of the script"
    return None


def _in_compat_v1(name: str) -> bool:
    tensorflow = sys.modules.get("tensorflow")
    compat = getattr(getattr(tensorflow, "compat", None), "v1", None)
    return compat is not None and hasattr(compat, name)
