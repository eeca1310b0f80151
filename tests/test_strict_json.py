"""Strict JSON everywhere: a version that reports and evaluates to inf, -inf and NaN, and every
JSON mlpipeline writes about it (its commands' --json, every file under outputs/) read back
with a parser that refuses the ``NaN``/``Infinity`` tokens other tools reject. The files are
found by walking outputs/, so a file added later is held to the same rule without a new test."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

STRANGE = '''
import math, os, time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Strange(Model):
    def train_model(self, data, steps):
        self.report(step=1, total=3, loss=1.0, accuracy=0.5, score=math.nan)
        self.report(step=2, total=3, loss=-math.inf, accuracy=math.inf, score=math.nan)
        self.report(step=3, total=3, loss=math.nan, accuracy=0.25, score=math.nan)
        gate = self.current_version.get("wait_for")  # held here while the test looks at the live files
        deadline = time.time() + 60
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.02)

    def evaluate_model(self, data, steps):
        return {"up": math.inf, "down": -math.inf, "none": math.nan, "nested": [math.inf, {"x": math.nan}]}


versions = Versions(0.1, SplitDataLoader(list(range(30)), list(range(10))), 10, 1)
versions.addV("strange", model_dir_suffix="strange", wait_for=os.environ.get("STRANGE_GATE"), ratio=math.inf)
versions.addV("plain", model_dir_suffix="plain", ratio=-math.inf)
versions.addV("later", model_dir_suffix="later")
MODEL = Strange(versions)
'''


def _refuse(token: str) -> Any:
    raise ValueError(f"non-standard JSON token {token}")


def strict(text: str, where: str) -> Any:
    """``text`` parsed as RFC 8259 JSON: NaN, Infinity and -Infinity are errors naming ``where``."""
    try:
        return json.loads(text, parse_constant=_refuse)
    except ValueError as exc:
        raise AssertionError(f"{where}: not strict JSON ({exc}): {text[:300]!r}") from None


# What outputs/ holds that is not JSON: logs for people, lock files, an atomic write's temporary
# file (half written, for a moment), the copy of the script in a run record, and MLflow's own
# store. Any other file must be strict JSON, whatever its name.
NOT_JSON = re.compile(r"^(log-.+|output-.+|\..+\.lock|\..+\.tmp|.+\.py|mlflow\.db)$")


def strict_files(outputs: Path, json_lines: bool = True) -> Dict[str, List[Any]]:
    """Every file under ``outputs`` (hidden folders included) but those NOT_JSON names, parsed
    strictly: a .jsonl file line by line (only with ``json_lines``: a daemon may be appending),
    any other as one JSON value. By file name; the files of outputs/'s hidden views
    (.heartbeats/<daemon>, .progress/<run>.json, ...) by their folder's name."""
    found: Dict[str, List[Any]] = {}
    for folder, subfolders, files in os.walk(outputs):
        subfolders[:] = [name for name in subfolders if name != "mlflow-artifacts"]
        here = Path(folder).name
        for name in files:
            if NOT_JSON.match(name):
                continue
            path = Path(folder) / name
            key = here if here.startswith(".") and here != ".mlpipeline" else name
            if not name.endswith(".jsonl"):
                found.setdefault(key, []).append(strict(path.read_text(encoding="utf-8"), str(path)))
            elif json_lines:
                text = path.read_text(encoding="utf-8")
                assert text.endswith("\n"), f"{path}: its last line is not ended"
                # Split at newlines only: a JSON string may hold U+2028, which splitlines() splits at.
                rows = [strict(line, f"{path}:{number}") for number, line in enumerate(text[:-1].split("\n"), 1)]
                found.setdefault(key, []).extend(rows)
    return found


def run_json(project, *args: str) -> Any:
    result = project.run(*args)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output, result.output
    return strict(result.stdout, " ".join(args))


def test_every_json_output_is_strict_with_non_finite_metrics_evaluations_and_parameters(project):
    gate = project.root / "gate"
    project.script("strange.py", STRANGE, prelude=False)
    project.queue(["strange.py"])
    daemon = project.start("-r", env={"STRANGE_GATE": str(gate)})
    try:
        history = project.outputs / "model_ckpts" / "strange-strange" / ".mlpipeline" / "metrics.jsonl"
        project.wait_for(
            lambda: history.is_file() and history.read_text().count("\n") == 3 and any((project.outputs / ".progress").glob("*.json")),
            timeout=60,
            what="strange.py:strange's three reports",
        )
        cancel = project.run("cancel", "strange.py:later")
        assert cancel.returncode == 0, cancel.output

        # While it runs: the heartbeat, the progress view, the listing, the run record.
        live = strict_files(project.outputs, json_lines=False)
        assert {".heartbeats", ".progress", ".listings", "run.json", "parameters.json"} <= set(live), sorted(live)
        (report,) = live[".progress"]
        assert report["metrics"]["score"] == "nan"
        rows = {f"{row['script']}:{row['version']}": row for row in run_json(project, "status", "--json")}
        assert rows["strange.py:strange"]["state"] == "running"
        assert rows["strange.py:strange"]["metrics"]["score"] == "nan"
        gate.write_text("go")
        output, _ = daemon.communicate(timeout=90)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        if daemon.stdout is not None and not daemon.stdout.closed:
            print(daemon.communicate()[0])  # shown when the test failed
    assert daemon.returncode == 0, output
    assert "Traceback" not in output, output

    rows = {f"{row['script']}:{row['version']}": row for row in run_json(project, "status", "--json")}
    assert rows["strange.py:strange"]["state"] == "finished" and rows["strange.py:plain"]["state"] == "finished"

    compared = {row["version"]: row for row in run_json(project, "compare", "--json")}
    assert compared["strange.py:strange"]["eval_test.up"] == "inf"
    assert compared["strange.py:strange"]["eval_test.down"] == "-inf"
    assert compared["strange.py:strange"]["eval_test.none"] == "nan"
    assert compared["strange.py:strange"]["ratio"] == "inf" and compared["strange.py:plain"]["ratio"] == "-inf"
    best = {row["version"]: row for row in run_json(project, "compare", "--json", "--best")}
    strange = best["strange.py:strange"]
    # The best of a metric that was infinite once is infinite, written as the records write it.
    assert (strange["best.loss"], strange["best.accuracy"]) == ("-inf", "inf")
    assert "best.score" not in strange  # NaN is never the best
    every = run_json(project, "compare", "--json", "--best", "--any-state", "--sort", "-accuracy")
    assert {row["version"] for row in every} == {"strange.py:strange", "strange.py:plain"}  # "later" never ran

    files = strict_files(project.outputs)
    expected = {"results.jsonl", "history.jsonl", "control.jsonl", "metrics.jsonl", "run.json", "parameters.json", ".listings"}
    assert expected <= set(files), sorted(files)
    (cancelled,) = [row for row in files["control.jsonl"] if row["action"] == "cancel"]
    assert (cancelled["script"], cancelled["version"]) == ("strange.py", "later")
    result = next(row for row in files["results.jsonl"] if row["version"] == "strange")
    assert result["eval_test"]["nested"] == ["inf", {"x": "nan"}] and result["parameters"]["ratio"] == "inf"
    reported = [row["metrics"] for row in files["metrics.jsonl"] if row["metrics"].get("score") == "nan"]
    assert [metrics["loss"] for metrics in reported][-3:] == [1.0, "-inf", "nan"]


def test_the_tracker_record_and_the_tracker_s_copy_are_strict_too(project):
    mlflow_client = pytest.importorskip("mlflow.tracking")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "mlflow"\n')
    project.script("strange.py", STRANGE, prelude=False)
    project.queue(["strange.py:strange"])
    result = project.run("-r")
    assert result.returncode == 0, result.output

    files = strict_files(project.outputs)
    assert "tracking.json" in files, sorted(files)
    client = mlflow_client.MlflowClient(f"sqlite:///{project.outputs / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("strange.py").experiment_id])
    assert strict(run.data.tags["mlpipeline.eval_test"], "the MLflow tag mlpipeline.eval_test")["up"] == "inf"
    assert run.data.params["ratio"] == "inf"
