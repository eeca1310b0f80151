"""The execution loop's decisions, walked through the in-process executor: every version runs in
this very process (executors/in_process.py), so the loop's choices are checked without a
process per version, against the real journal, claims and records."""
from __future__ import annotations

import io
import json
from typing import Any, List

from rich.console import Console

from conftest import scripts_of, versions_code
from mlpipeline.execution.loop import ExecutionLoop, ExecutionOptions
from mlpipeline.executors.in_process import InProcessExecutor
from mlpipeline.queue.config import load_project_config
from mlpipeline.watch.console import ConsoleView


def _run_loop(project: Any, **options: Any) -> int:
    view = ConsoleView(Console(file=io.StringIO(), force_terminal=False))
    config = load_project_config(project.root)
    return ExecutionLoop(config, ExecutionOptions(**options), view, executor=InProcessExecutor(project.root)).run()


def _trained(project: Any) -> List[str]:
    path = project.root / "calls.jsonl"
    calls = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [f"{call['script']}:{call['version']}" for call in calls if call.get("hook") == "train"]


def test_use_history_skips_what_ended_and_retry_failed_runs_the_failed_again(project):
    project.script("a.py", versions_code('versions.addV("good")', 'versions.addV("bad", fail_in="train")'))
    project.queue(["a.py"])
    assert _run_loop(project) != 0  # a version failed
    assert _trained(project) == ["a.py:good", "a.py:bad"]
    assert [(row["version"], row["status"]) for row in project.results()] == [("good", "finished"), ("bad", "failed")]

    assert _run_loop(project, use_history=True) == 0  # -u: the finished and the failed are both done with
    assert _trained(project) == ["a.py:good", "a.py:bad"]

    assert _run_loop(project, use_history=True, retry_failed=True) != 0  # --retry-failed: the failed, again
    assert _trained(project) == ["a.py:good", "a.py:bad", "a.py:bad"]
    assert scripts_of(project.results()) == ["a.py:good", "a.py:bad", "a.py:bad"]


def test_without_use_history_every_version_runs_again_from_the_start(project):
    project.script("a.py", versions_code('versions.addV("good")'))
    project.queue(["a.py"])
    assert _run_loop(project) == 0
    assert _run_loop(project) == 0
    assert _trained(project) == ["a.py:good", "a.py:good"]
    assert [row["status"] for row in project.results()] == ["finished", "finished"]
