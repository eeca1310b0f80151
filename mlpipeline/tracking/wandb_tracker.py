"""Weights & Biases: a W&B run per version, named ``script:version`` and grouped by script,
in the W&B project ``WANDB_PROJECT`` (else the project folder's name). Several versions run
at once, so every run is its own object (``reinit="create_new"``), never W&B's global run.

W&B is configured as W&B users configure it, by its own environment variables
(``WANDB_MODE=offline``, ``WANDB_ENTITY``, ``WANDB_API_KEY``, ``WANDB_DIR``); its files go to
``<outputs>/wandb/`` unless ``WANDB_DIR`` says otherwise. The daemon's own console, system
metrics and git state are not W&B's to take: the version is not the daemon.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.records.states import RunState
from mlpipeline.tracking.bridge import TrackedRun, Tracker, evaluations

_ENDS = {state.value for state in RunState} - {RunState.PENDING.value, RunState.RUNNING.value}
"""How a version's run can end: the W&B run that ended so is tagged with it."""

OFFLINE_MODES = ("offline", "dryrun", "disabled")
SETTINGS = {
    "console": "off",  # W&B would otherwise capture the daemon's own console as the run's
    "silent": True,  # its lines would cut into the queue's output
    "x_disable_stats": True,  # the daemon's CPU and memory, not the version's
    "x_disable_meta": True,
    "x_disable_machine_info": True,
    "disable_git": True,  # the commit is the run record's, given in the config
    "save_code": False,  # the script as the run imported it is saved at the end
    "x_save_requirements": False,
    # To its run file each second (W&B's default is 15 s): a daemon killed with -9 loses at
    # most the last second of a run's reports, as with the other trackers.
    "x_transaction_log_flush_interval": 1.0,
}


class WandbSetupError(RuntimeError):
    """W&B cannot be used as configured: said at the daemon's start."""


class WandbTracker(Tracker):
    name = "W&B"

    def __init__(self, outputs_dir: Path, default_project: str) -> None:
        import wandb

        self._wandb = wandb
        self.project = os.environ.get("WANDB_PROJECT") or default_project
        self.folder = Path(os.environ.get("WANDB_DIR") or outputs_dir)
        if os.environ.get("WANDB_MODE", "").lower() not in OFFLINE_MODES:
            quiet = io.StringIO()
            with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
                logged_in = wandb.login(verify=False, prompt=False)  # reads the key; no network
            if not logged_in:
                raise WandbSetupError("W&B has no API key: run `wandb login`, set WANDB_API_KEY, or WANDB_MODE=offline to keep the runs on disk")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._runs: Dict[str, Any] = {}  # our run id -> W&B's run object
        self._last_step: Dict[str, int] = {}
        self._parameters_logged: set = set()

    def start(self, run: TrackedRun) -> None:
        earlier = run.earlier()
        resumed_id = earlier.get("run_id") if earlier.get("tracker") == "wandb" and earlier.get("project") == self.project else None
        if not isinstance(resumed_id, str) or not resumed_id:
            resumed_id = None  # nothing kept, or tracking.json edited into something else: a new run
        config: Dict[str, Any] = {"mlpipeline": {"script": run.script, "version": run.version, "run_id": run.run_id}}
        if run.git:
            config["mlpipeline"]["git"] = run.git
        wandb_run = self._wandb.init(
            project=self.project,
            dir=str(self.folder),
            name=f"{run.script}:{run.version}",
            group=run.script,
            config=config,
            id=resumed_id,
            resume="allow" if resumed_id else None,
            reinit="create_new",
            settings=self._wandb.Settings(**SETTINGS),
        )
        self._runs[run.run_id] = wandb_run
        self._remember(run)

    def metrics(self, run: TrackedRun, reports: List[Tuple[float, Any, Dict[str, float]]]) -> None:
        wandb_run = self._runs[run.run_id]
        self._remember(run)
        self._log_parameters(run, wandb_run)
        last = self._last_step.get(run.run_id, -1)
        for _, step, values in reports:
            # W&B's steps only go up: a report at a step it has (a resume from a checkpoint
            # older than the last report) is left out, as W&B itself would drop it.
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or int(step) <= last:
                continue
            last = int(step)
            wandb_run.log(values, step=last)
        self._last_step[run.run_id] = last

    def end(self, run: TrackedRun, record: Dict[str, Any]) -> None:
        wandb_run = self._runs.pop(run.run_id, None)
        if wandb_run is None:
            return
        self._last_step.pop(run.run_id, None)
        state = str(record.get("status"))
        try:
            self._remember(run, wandb_run)
            self._log_parameters(run, wandb_run, record)
            summary = {name: value for name, value in evaluations(record, "/").items() if math.isfinite(value)}
            summary["mlpipeline/state"] = state
            summary["mlpipeline/reason"] = str(record.get("reason") or "")[:5000]
            wandb_run.summary.update(summary)
            wandb_run.tags = tuple(tag for tag in wandb_run.tags if tag not in _ENDS) + (state,)
            copy = run.script_copy()
            if copy is not None:
                # Copied into the run's folder: saved from elsewhere, W&B would keep a link to a
                # record file that the version's next run replaces.
                kept = Path(wandb_run.dir) / copy.name
                shutil.copyfile(copy, kept)
                wandb_run.save(str(kept), base_path=wandb_run.dir, policy="now")
        finally:
            # Whatever failed above, the run does not stay running in W&B.
            # A run paused at an early-stopping rung, or stopped there while it ran, ended as planned.
            wandb_run.finish(exit_code=0 if state in ("finished", "paused", "stopped") else 1)

    def close(self) -> None:
        for wandb_run in self._runs.values():
            wandb_run.finish(exit_code=1)
        self._runs.clear()
        self._wandb.teardown()  # W&B's own process has written everything when this returns

    def _remember(self, run: TrackedRun, wandb_run: Optional[Any] = None) -> None:
        """Keep the W&B run id with the model, for a resume; again after the version's own
        clean_model_dir, which may have emptied the folder since the run began."""
        wandb_run = wandb_run or self._runs[run.run_id]
        run.remember({"tracker": "wandb", "project": self.project, "run_id": wandb_run.id})

    def _log_parameters(self, run: TrackedRun, wandb_run: Any, record: Optional[Dict[str, Any]] = None) -> None:
        if run.run_id in self._parameters_logged:
            return
        parameters = run.parameters(record)
        if not parameters:
            return  # the version's process has not written them yet
        wandb_run.config.update(parameters, allow_val_change=True)
        self._parameters_logged.add(run.run_id)
