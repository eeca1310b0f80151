"""Optional dependencies (torch, tensorflow): imported only by the modules that need them."""
from __future__ import annotations

import importlib
from types import ModuleType

from mlpipeline.script_support.failures import ExplainedFailure


class MissingExtra(ImportError, ExplainedFailure):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, user: str) -> ModuleType:
    """Import ``module`` for ``user``, or raise MissingExtra saying ``pip install 'mlpipeline[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{user} needs {module}, which is not installed: pip install 'mlpipeline[{extra}]'") from None
