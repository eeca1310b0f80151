"""The tracker mlp.config names, made at the daemon's start: a missing library or a store
that cannot be opened is a config error then, naming the key, not a failure of every run."""
from __future__ import annotations

from typing import Callable, Optional

from mlpipeline.queue.config import PROJECT_CONFIG, ConfigError, ProjectConfig, key_line
from mlpipeline.tracking.bridge import Tracker, TrackingBridge

EXTRAS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard")}
"""tracking = X: (the package it needs, the mlpipeline extra that installs it)."""


def tracking_bridge(project: ProjectConfig, warn: Callable[[str, str], None]) -> Optional[TrackingBridge]:
    """The bridge to the configured tracker, or None when mlp.config names none."""
    if project.tracking is None:
        return None
    line = _line(project, "tracking")
    try:
        tracker = _tracker(project)
    except ImportError as exc:
        package, extra = EXTRAS[project.tracking]
        raise ConfigError(
            PROJECT_CONFIG,
            f"tracking = \"{project.tracking}\" needs {package}, which cannot be imported ({exc}): "
            f"pip install 'mlpipeline[{extra}]'",
            line,
        ) from None
    except Exception as exc:  # noqa: BLE001 - the library's own error, said with where it came from
        where = project.tracking_uri or project.tracking_dir or "its default store"
        raise ConfigError(
            PROJECT_CONFIG, f"tracking = \"{project.tracking}\": {where} cannot be used ({type(exc).__name__}: {exc})", line
        ) from None
    return TrackingBridge(tracker, warn)


def _tracker(project: ProjectConfig) -> Tracker:
    if project.tracking == "mlflow":
        from mlpipeline.tracking.mlflow_tracker import MlflowTracker, default_store

        if project.tracking_uri:
            return MlflowTracker(project.tracking_uri)
        return MlflowTracker(*default_store(project.outputs_dir))
    from mlpipeline.tracking.tensorboard_tracker import TensorBoardTracker

    return TensorBoardTracker(project.tracking_dir)


def _line(project: ProjectConfig, key: str) -> Optional[int]:
    try:
        return key_line((project.project_dir / PROJECT_CONFIG).read_text(encoding="utf-8"), "MLP", key)
    except OSError:
        return None
