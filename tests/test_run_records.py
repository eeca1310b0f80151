"""A finished model carries what made it: <model_dir>/.mlpipeline/, the git commit, on_version_end."""
from __future__ import annotations

import json
import os
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
    # Readable by whoever may read the folder, as the umask says (022 here): not owner-only.
    for name in ("net.py", "parameters.json", "run.json"):
        assert (records / name).stat().st_mode & 0o777 == 0o666 & ~current_umask(), name

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


DVC_LOCK = """schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py data/raw.csv
    deps:
    - path: data/raw.csv
      hash: md5
      md5: 22a1a2931c8370d3aeedd7183606fd7f
      size: 14445097
    - path: prepare.py
      hash: md5
      md5: e1e5a3b0b4d2b7a4d3c1a1a2b3c4d5e6
      size: 1576
    outs:
    - path: data/prepared
      hash: md5
      md5: 153aad06d376b6595932470e459ef42a.dir
      size: 8437363
      nfiles: 2
"""
RAW_DVC = """outs:
- md5: 22a1a2931c8370d3aeedd7183606fd7f
  size: 14445097
  hash: md5
  path: raw.csv
"""


def test_a_dvc_projects_data_version_is_recorded_beside_the_commit(project):
    import hashlib

    project.write(".dvc/config", "[core]\n    autostage = true\n")
    project.write("dvc.lock", DVC_LOCK)
    project.write("data/raw.csv.dvc", RAW_DVC)
    (project.root / "data" / "notes.dvc").write_bytes(b"\xff\xfe not what DVC writes: {[\n- path\n\x00md5: 1\n")  # hashed, no entry
    commit = committed_project(project)
    assert project.run("-r").returncode == 1  # b fails on purpose
    sha = lambda name: hashlib.sha256((project.root / name).read_bytes()).hexdigest()  # noqa: E731
    expected = {
        "root": str(project.root),
        "files": {"data/notes.dvc": sha("data/notes.dvc"), "data/raw.csv.dvc": sha("data/raw.csv.dvc"), "dvc.lock": sha("dvc.lock")},
        "data": {"data/raw.csv": "22a1a2931c8370d3aeedd7183606fd7f", "prepare.py": "e1e5a3b0b4d2b7a4d3c1a1a2b3c4d5e6",
                 "data/prepared": "153aad06d376b6595932470e459ef42a.dir"},
    }
    assert run_record(project, "a")["dvc"] == expected and run_record(project, "a")["git"]["commit"] == commit
    assert {row["version"]: row["dvc"] for row in project.results()} == {"a": expected, "b": expected}
    assert f"dvc data:       data/notes.dvc {sha('data/notes.dvc')[:12]}, data/raw.csv.dvc {sha('data/raw.csv.dvc')[:12]}, dvc.lock {sha('dvc.lock')[:12]} (3 data paths)\n" in project.output_text()

    # New data (dvc repro wrote a new lock): the next run records the new version.
    project.write("dvc.lock", DVC_LOCK.replace("153aad06d376b6595932470e459ef42a", "0" * 32))
    assert project.run("-r", "--only", "net.py:a").returncode == 0
    assert project.results()[-1]["dvc"]["data"]["data/prepared"] == "0" * 32 + ".dir"


def test_without_dvc_a_record_has_no_data_version(project):
    committed_project(project)
    project.run("-r")
    assert "dvc" not in run_record(project, "a") and all("dvc" not in row for row in project.results())
    assert "dvc data:" not in project.output_text()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("stand_in", ["garbage", "a folder", "a fifo"])
def test_a_run_record_replaced_while_its_run_goes_on_is_said_at_its_end(project, stand_in):
    import os

    from conftest import versions_code

    project.script("a.py", versions_code('versions.addV("v", sleep_per_step=0.05, model_dir_suffix="v")', defaults="learning_rate=0.1, dataloader=Data(40), batch_size=1, epoc_count=1"))
    project.queue(["a.py"])
    record = project.outputs / "model_ckpts" / "a-v" / ".mlpipeline" / "run.json"
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="training")
    record.unlink()
    if stand_in == "garbage":
        record.write_text("{not json")
    elif stand_in == "a folder":
        record.mkdir()
    else:
        os.mkfifo(record)
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert f"{record}: no run record can be read there; how the run ended is not added to it" in output
    assert [row["status"] for row in project.results()] == ["finished"]
