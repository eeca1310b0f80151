"""Which executors a daemon uses: mlp.config's ``executor`` says where versions run.

``local`` (the default): this host, through the preload server when ``preload`` names
modules. ``ray``: the tasks of a Ray cluster (executors/ray_executor.py), with GPUs placed by
Ray. ``slurm``: a Slurm job per version (executors/slurm_executor.py), GPUs as its gres.
Scripts are always imported on this host to learn their versions, which needs no GPU and no
cluster. Test mode always runs on this host: a dry run before the cluster is spent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from mlpipeline.execution.gpus import ClusterGpus, GpuPool, detect_gpus
from mlpipeline.executors.base import Executor
from mlpipeline.executors.gpu_usage import GpuUsage
from mlpipeline.executors.local import LocalExecutor, remove_abandoned_run_folders
from mlpipeline.executors.preloaded import local_executor
from mlpipeline.queue.config_files import PROJECT_CONFIG, ConfigError
from mlpipeline.queue.config import ProjectConfig
from mlpipeline.script_support.extras import MissingExtra, require


@dataclass
class Executors:
    """Where versions run, where scripts are listed, and the GPUs versions are granted from."""

    runs: Executor
    listings: Executor
    gpus: GpuPool

    def close(self) -> None:
        self.runs.close()
        if self.listings is not self.runs:
            self.listings.close()


def choose_executors(
    project: ProjectConfig, warn: Callable[[str], None], heartbeat: Optional[Dict[str, Any]] = None, daemon: str = ""
) -> Executors:
    """The executors mlp.config asks for; a ConfigError names mlp.config when the Ray cluster
    or Slurm cannot be used. ``daemon``: this daemon's key, which a Slurm job's folder names."""
    remove_abandoned_run_folders()  # a daemon killed with its children left its versions' folders
    if project.executor == "ray":
        try:
            require("ray", "ray", 'executor = "ray"')
        except MissingExtra as exc:
            raise ConfigError(PROJECT_CONFIG, str(exc), project.line_of("executor")) from None
        from mlpipeline.executors.ray_executor import ClusterUnavailable, RayExecutor

        try:
            runs = RayExecutor(project.project_dir, project.outputs_dir, project.ray_address)
        except ClusterUnavailable as exc:
            line = project.line_of("ray_address") or project.line_of("executor")
            raise ConfigError(PROJECT_CONFIG, f'executor = "ray": {exc}', line) from None
        listings = local_executor(project.project_dir, project.preload, warn, heartbeat, project.preload_scripts)
        return Executors(runs, listings, ClusterGpus(runs.node_gpus))
    if project.executor == "slurm":
        return _slurm_executors(project, warn, heartbeat, daemon)
    # Detected before the preload server starts: it must not see a GPU the versions are given.
    usage = GpuUsage()
    ids, problem = detect_gpus() if project.gpus is None else (list(project.gpus), None)
    if problem:
        warn(problem)
    gpus = GpuPool(ids, usage, project.gpu_busy_memory)
    executor = local_executor(project.project_dir, project.preload, warn, heartbeat, project.preload_scripts)
    if gpus.ids and isinstance(executor, LocalExecutor):
        executor.gpu_usage = usage  # each version's peak GPU memory and its GPUs' utilization
    return Executors(executor, executor, gpus)


def _slurm_executors(project: ProjectConfig, warn: Callable[[str], None], heartbeat: Optional[Dict[str, Any]], daemon: str) -> Executors:
    from mlpipeline.executors.slurm_commands import SlurmUnavailable
    from mlpipeline.executors.slurm_executor import SlurmExecutor

    settings = project.slurm
    try:
        runs = SlurmExecutor(
            project.project_dir, project.outputs_dir, settings.partition, settings.time, settings.sbatch_args, daemon
        )
    except (SlurmUnavailable, OSError) as exc:
        given = [key for key in ("partition", "time", "sbatch_args") if project.line_of(f"SLURM.{key}")]
        line = project.line_of(f"SLURM.{given[0]}") if given else project.line_of("executor")
        where = f" (set in [SLURM]: {', '.join(given)})" if given else ""
        raise ConfigError(PROJECT_CONFIG, f'executor = "slurm": {exc}{where}', line) from None
    listings = local_executor(project.project_dir, project.preload, warn, heartbeat, project.preload_scripts)
    return Executors(runs, listings, ClusterGpus(runs.node_gpus, "the Slurm cluster"))
