"""MLflow: each script an experiment, each version a run, through MlflowClient (no global
state: several versions run at once). The default store is ``sqlite:///<outputs>/mlflow.db``
with artifacts in ``<outputs>/mlflow-artifacts``; ``tracking_uri`` names another, a server's
included."""
from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.records.files import json_text
from mlpipeline.tracking.bridge import TrackedRun, Tracker, evaluations, final_step

STATUS = {
    "finished": "FINISHED", "failed": "FAILED", "timed_out": "FAILED", "interrupted": "KILLED", "cancelled": "KILLED",
    # Early stopping: a run paused at a rung waits to be promoted; a version stopped there is done.
    "paused": "SCHEDULED", "stopped": "FINISHED",
}  # fmt: skip
"""MLflow's run status for how a version's run ended; a cut-off run is KILLED until it resumes."""

_NAME = re.compile(r"[^\w\-. /]")
PARAM_LIMIT = 6000


def mlflow_name(name: str) -> str:
    """``name`` as MLflow takes metric and parameter names: letters, digits, _ - . / and
    space, and a path it would not normalise into another (no //, no leading /, no ..)."""
    text = re.sub(r"/+", "/", _NAME.sub("_", str(name))).strip("/")
    text = "/".join("_" if part in (".", "..") else part for part in text.split("/"))
    return text[:250] or "_"


def unique_names(names: List[str]) -> Dict[str, str]:
    """Each of ``names`` as mlflow_name makes it, told apart where two would become one."""
    result: Dict[str, str] = {}
    taken: set = set()
    for name in names:
        candidate = base = mlflow_name(name)
        number = 2
        while candidate in taken:
            candidate, number = f"{base}_{number}", number + 1
        taken.add(candidate)
        result[name] = candidate
    return result


class MlflowTracker(Tracker):
    name = "MLflow"

    def __init__(self, tracking_uri: str, artifact_location: Optional[str] = None) -> None:
        # A server that does not answer costs seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        # After the import, which sets MLflow's own levels: its INFO lines are not the queue's.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self._artifact_location = artifact_location
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._client.search_experiments(max_results=1)  # the store answers, at start, or the daemon says so
        self._runs: Dict[str, str] = {}  # our run id -> MLflow's
        self._parameters_logged: set = set()

    def start(self, run: TrackedRun) -> None:
        earlier = run.earlier()
        if earlier.get("tracker") == "mlflow" and earlier.get("tracking_uri") == self.tracking_uri and earlier.get("run_id"):
            # The resumed version goes on in the run its first part began.
            mlflow_run = earlier["run_id"]
            self._client.update_run(mlflow_run, status="RUNNING")
            self._parameters_logged.add(run.run_id)
        else:
            tags = {"mlflow.source.name": run.script, "mlpipeline.run_id": run.run_id}
            if run.git and run.git.get("commit"):
                tags["mlflow.source.git.commit"] = str(run.git["commit"])
                tags["mlpipeline.git_dirty"] = str(bool(run.git.get("dirty"))).lower()
            mlflow_run = self._client.create_run(self._experiment(run.script), run_name=run.version, tags=tags).info.run_id
        self._runs[run.run_id] = mlflow_run
        self._remember(run)
        self._client.set_tag(mlflow_run, "mlpipeline.latest_run_id", run.run_id)

    def metrics(self, run: TrackedRun, reports: List[Tuple[float, Any, Dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        mlflow_run = self._runs[run.run_id]
        self._remember(run)
        self._log_parameters(run, mlflow_run)
        names = unique_names(sorted({name for _, _, values in reports for name in values}))
        batch = [
            Metric(names[name], value, int(when * 1000), int(step) if isinstance(step, (int, float)) else 0)
            for when, step, values in reports
            for name, value in values.items()
        ]
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a batch
            self._client.log_batch(mlflow_run, metrics=batch[start : start + 1000])

    def end(self, run: TrackedRun, record: Dict[str, Any]) -> None:
        mlflow_run = self._runs.get(run.run_id)
        if mlflow_run is None:
            return
        try:
            self._remember(run)
            self._log_parameters(run, mlflow_run, record)
        finally:
            del self._runs[run.run_id]
            self._finish(run, mlflow_run, record)

    def _finish(self, run: TrackedRun, mlflow_run: str, record: Dict[str, Any]) -> None:
        from mlflow.entities import Metric

        final, now = final_step(record), int(time.time() * 1000)
        values = evaluations(record, ".")
        names = unique_names(list(values))
        metrics = [Metric(names[name], value, now, final) for name, value in values.items() if math.isfinite(value)]
        tags = {"mlpipeline.state": str(record.get("status"))}
        for side in ("eval_train", "eval_test"):
            if record.get(side) is not None:
                tags[f"mlpipeline.{side}"] = json_text(record[side])[:5000]
        tags["mlpipeline.reason"] = str(record.get("reason") or "")[:5000]  # a resumed run's earlier reason goes
        try:
            if metrics:
                self._client.log_batch(mlflow_run, metrics=metrics)
            for key, value in tags.items():
                self._client.set_tag(mlflow_run, key, value)
            copy = run.script_copy()
            if copy is not None:
                self._client.log_artifact(mlflow_run, str(copy), "script")
        finally:
            # Whatever failed above, the run does not stay RUNNING in MLflow.
            self._client.set_terminated(mlflow_run, STATUS.get(str(record.get("status")), "FAILED"))

    def _remember(self, run: TrackedRun) -> None:
        """Keep the MLflow run id with the model, for a resume; again after the version's own
        clean_model_dir, which may have emptied the folder since the run began."""
        run.remember({"tracker": "mlflow", "tracking_uri": self.tracking_uri, "run_id": self._runs[run.run_id]})

    def _experiment(self, script: str) -> str:
        found = self._client.get_experiment_by_name(script)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(script, artifact_location=self._artifact_location)
        except Exception:  # noqa: BLE001 - another daemon made it a moment ago
            found = self._client.get_experiment_by_name(script)
            if found is None:
                raise
            return found.experiment_id

    def _log_parameters(self, run: TrackedRun, mlflow_run: str, record: Optional[Dict[str, Any]] = None) -> None:
        if run.run_id in self._parameters_logged:
            return
        parameters = run.parameters(record)
        if not parameters:
            return  # the version's process has not written them yet
        from mlflow.entities import Param

        names = unique_names(list(parameters))
        params = [Param(names[key], _text(value)[:PARAM_LIMIT]) for key, value in parameters.items()]
        for start in range(0, len(params), 100):
            self._client.log_batch(mlflow_run, params=params[start : start + 100])
        self._parameters_logged.add(run.run_id)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def default_store(outputs_dir: Path) -> Tuple[str, str]:
    """The tracking URI and artifact location used when mlp.config names none."""
    return f"sqlite:///{outputs_dir / 'mlflow.db'}", (outputs_dir / "mlflow-artifacts").as_uri()
