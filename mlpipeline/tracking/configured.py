"""The tracker mlp.config names, made at the daemon's start: a missing library or a store
that cannot be opened is a config error then, naming the key, not a failure of every run."""
from __future__ import annotations

import os
from typing import Callable, Optional

from mlpipeline.queue.config import PROJECT_CONFIG, ConfigError, ProjectConfig
from mlpipeline.tracking.bridge import Tracker, TrackingBridge

EXTRAS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}
"""tracking = X: (the package it needs, the mlpipeline extra that installs it)."""


def tracking_bridge(project: ProjectConfig, warn: Callable[[str, str], None]) -> Optional[TrackingBridge]:
    """The bridge to the configured tracker, or None when mlp.config names none."""
    if project.tracking is None:
        return None
    line = project.line_of("tracking")
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
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library's own error, said with where it came from
        where = project.tracking_uri or project.tracking_dir or "its default store"
        key = "tracking_uri" if project.tracking_uri else "tracking_dir" if project.tracking_dir else "tracking"
        raise ConfigError(
            PROJECT_CONFIG,
            f"tracking = \"{project.tracking}\": {where} cannot be used ({type(exc).__name__}: {str(exc)[:500]})",
            project.line_of(key) or line,
        ) from None
    return TrackingBridge(tracker, warn)


def _tracker(project: ProjectConfig) -> Tracker:
    if project.tracking == "mlflow":
        from mlpipeline.tracking.mlflow_tracker import MlflowTracker, default_store

        uri, artifacts = default_store(project.outputs_dir)
        if project.tracking_uri:
            uri = project_relative(project.tracking_uri, project)
            # A server keeps its own artifacts; a database file here would put them in
            # ./mlruns of whatever folder the daemon started in.
            if not uri.startswith("sqlite:"):
                artifacts = None
        return MlflowTracker(uri, artifacts)
    if project.tracking == "wandb":
        from mlpipeline.tracking.wandb_tracker import WandbSetupError, WandbTracker

        try:
            return WandbTracker(project.outputs_dir, project.project_dir.name)
        except WandbSetupError as exc:
            raise ConfigError(PROJECT_CONFIG, f"tracking = \"wandb\": {exc}", project.line_of("tracking")) from None
    from mlpipeline.tracking.tensorboard_tracker import TensorBoardTracker

    return TensorBoardTracker(project.tracking_dir)


def project_relative(uri: str, project: ProjectConfig) -> str:
    """A sqlite URI with a relative path, made absolute from the project folder (as
    tracking_dir is), so the store does not depend on the folder the daemon started in."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and not uri[len(prefix):].startswith(":memory:"):
        return prefix + os.path.realpath(project.project_dir / uri[len(prefix):])
    return uri
