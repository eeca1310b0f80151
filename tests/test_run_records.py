"""A finished model carries what made it: <model_dir>/.mlpipeline/, the git commit, on_version_end."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import pytest
from conftest import Project, versions_code

from mlpipeline import __version__

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

TWO_VERSIONS = versions_code(
    'versions.addV("a", model_dir_suffix="a", note="first")',
    'versions.addV("b", model_dir_suffix="b", fail_in="train")',
)


def git(project: Project, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(project.root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def committed_project(project: Project) -> str:
    """The project as a git repository with everything committed; returns the commit."""
    project.script("net.py", TWO_VERSIONS)
    project.queue(["net.py"])
    project.write("README.txt", "notes\n")
    project.write(".gitignore", "models/outputs/\ncalls.jsonl\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "first")
    return git(project, "rev-parse", "HEAD")


def run_record(project: Project, version: str) -> dict:
    return json.loads((project.outputs / "model_ckpts" / f"net-{version}" / ".mlpipeline" / "run.json").read_text())


def test_model_dir_carries_the_script_parameters_and_run(project):
    commit = committed_project(project)
    result = project.run("-r")
    assert result.returncode == 1  # b fails on purpose
    records = project.outputs / "model_ckpts" / "net-a" / ".mlpipeline"
    assert (records / "net.py").read_bytes() == (project.models / "net.py").read_bytes()
    parameters = json.loads((records / "parameters.json").read_text())
    assert parameters["learning_rate"] == 0.1 and parameters["batch_size"] == 10 and parameters["note"] == "first"
    assert parameters["dataloader"] == "Data"  # an object by its class name, never an address

    finished = {row["version"]: row for row in project.results()}
    run = run_record(project, "a")
    assert run["run_id"] == finished["a"]["run_id"]
    assert run["script"] == "net.py" and run["version"] == "a" and run["state"] == "finished"
    assert run["git"] == {"commit": commit, "dirty": False, "script_committed": True, "repository": str(project.root)}
    assert run["host"] == finished["a"]["host"]
    assert run["software"]["python"] == platform.python_version()
    assert run["software"]["mlpipeline"] == __version__
    assert "torch" not in run["software"] and "tensorflow" not in run["software"]
    assert run["ended_at"] == finished["a"]["time"] and run["duration_s"] == finished["a"]["duration_s"]
    assert run_record(project, "b")["state"] == "failed"

    # The output block and results.jsonl carry the commit too.
    assert finished["a"]["git"]["commit"] == commit and finished["a"]["git"]["dirty"] is False
    assert f"git commit:     {commit}\n" in project.output_text()


def test_dirty_flag_follows_tracked_files_and_the_script(project):
    commit = committed_project(project)
    (project.root / "README.txt").write_text("changed\n")  # a tracked file, not a script
    (project.root / "scratch.txt").write_text("untracked files do not count\n")
    assert project.run("-r", "--only", "net.py:a").returncode == 0
    record = project.results()[-1]
    assert record["git"] == {"commit": commit, "dirty": True, "script_committed": True, "repository": str(project.root)}
    assert f"git commit:     {commit} (dirty)\n" in project.output_text()

    git(project, "checkout", "-q", "README.txt")
    script = project.models / "net.py"
    script.write_text(script.read_text() + "\n# edited after the commit\n")
    assert project.run("-r", "--only", "net.py:a").returncode == 0
    record = project.results()[-1]
    assert record["git"]["dirty"] is True and record["git"]["script_committed"] is False
    assert f"git commit:     {commit} (dirty, script not as committed)\n" in project.output_text()
    records = project.outputs / "model_ckpts" / "net-a" / ".mlpipeline"
    assert (records / "net.py").read_text().endswith("# edited after the commit\n")  # the code as it ran


def test_outside_a_repository_there_is_no_commit(project):
    project.script("net.py", TWO_VERSIONS)
    project.queue(["net.py"])
    project.run("-r")
    assert run_record(project, "a")["git"] is None
    assert project.results()[0]["git"] is None
    assert "git commit:" not in project.output_text()


HOOK = """
import json, os, sys
variables = {k: v for k, v in os.environ.items() if k.startswith("MLPIPELINE_")}
with open("ends.jsonl", "a") as handle:
    handle.write(json.dumps(variables) + "\\n")
print("noted", variables["MLPIPELINE_VERSION"])
"""


def test_on_version_end_runs_after_each_version_with_its_variables(project):
    project.write("hook.py", HOOK)
    project.write(
        "mlp.config",
        f'[MLP]\nmodels_dir = "models"\non_version_end = [{json.dumps(sys.executable)}, "hook.py"]\n',
    )
    project.script("net.py", TWO_VERSIONS)
    project.queue(["net.py"])
    result = project.run("-r")
    assert result.returncode == 1
    ends = [json.loads(line) for line in (project.root / "ends.jsonl").read_text().splitlines()]
    by_version = {end["MLPIPELINE_VERSION"]: end for end in ends}
    assert sorted(by_version) == ["a", "b"]
    results = {row["version"]: row for row in project.results()}
    for version, state in (("a", "finished"), ("b", "failed")):
        end = by_version[version]
        assert end["MLPIPELINE_SCRIPT"] == "net.py"
        assert end["MLPIPELINE_STATE"] == state
        assert end["MLPIPELINE_RUN_ID"] == results[version]["run_id"]
        assert end["MLPIPELINE_MODEL_DIR"] == results[version]["model_dir"]
    assert "INFO net.py:a on_version_end: noted a" in project.log_text()


def test_a_failing_on_version_end_command_is_logged_and_the_queue_goes_on(project):
    project.write(
        "mlp.config", '[MLP]\nmodels_dir = "models"\non_version_end = ["no-such-command-for-mlpipeline"]\n'
    )
    project.script("net.py", versions_code('versions.addV("a")', 'versions.addV("b")'))
    project.queue(["net.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    assert [row["status"] for row in project.results()] == ["finished", "finished"]
    log = project.log_text()
    assert "WARNING net.py:a on_version_end: no-such-command-for-mlpipeline could not be started" in log
    assert "WARNING net.py:b on_version_end" in log

    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\non_version_end = ["false"]\n')
    assert project.run("-r").returncode == 0
    assert "WARNING net.py:a on_version_end: false ended with exit status 1" in project.log_text()
