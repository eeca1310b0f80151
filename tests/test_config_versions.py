"""Versions made from configuration files (Versions.add_config_files): YAML composed by Hydra
with overrides and sweeps, and gin files bound in the version's own run. Real Hydra, OmegaConf
and gin, as CI installs them; real mlpipeline processes on a real project."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import REPO, Project


HYDRA_SCRIPT = '''
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Net(Model):
    def train_model(self, input_fn, steps):
        version = self.current_version
        self.report(step=steps, total=steps, loss=version["learning_rate"] * version.model.width)

    def evaluate_model(self, input_fn, steps):
        return {"width": self.current_version.model.width, "tag": self.current_version["tag"]}


versions = Versions(dataloader=SplitDataLoader([1, 2, 3, 4], [1]))
versions.add_config_files("conf/config.yaml", overrides=["learning_rate=0.1,0.01", "model=small,large"])
MODEL = Net(versions)
'''

GIN_SCRIPT = '''
import gin
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


@gin.configurable
def scale(x, factor=1, offset=0):
    return x * factor + offset


class Net(Model):
    def train_model(self, input_fn, steps):
        self.report(step=steps, total=steps, loss=scale(1.0))

    def evaluate_model(self, input_fn, steps):
        return {"scaled": scale(1.0)}


versions = Versions(dataloader=SplitDataLoader([1, 2], [1]), batch_size=1, epoc_count=1)
versions.add_config_files("gin/*.gin")
MODEL = Net(versions)
'''


def hydra_project(project: Project) -> Project:
    project.write(
        "models/conf/config.yaml",
        """\
        defaults:
          - model: small
          - _self_
        learning_rate: 0.1
        batch_size: 2
        epoc_count: 1
        tag: w${model.width}
        """,
    )
    project.write("models/conf/model/small.yaml", "width: 8\n")
    project.write("models/conf/model/large.yaml", "width: 64\n")
    project.script("net.py", HYDRA_SCRIPT, prelude=False)
    project.queue(["net.py"])
    project.queue(["net.py"], test=True)
    return project


def finished(project: Project) -> dict:
    return {row["version"]: row for row in project.results() if row["status"] == "finished"}


def test_a_hydra_sweep_makes_a_version_for_each_combination_with_its_resolved_config(project: Project) -> None:
    hydra_project(project)
    result = project.run("-r", timeout=180)
    assert result.returncode == 0, result.output
    rows = finished(project)
    assert sorted(rows) == [
        "learning_rate=0.01,model=large", "learning_rate=0.01,model=small",
        "learning_rate=0.1,model=large", "learning_rate=0.1,model=small",
    ]  # fmt: skip
    row = rows["learning_rate=0.01,model=large"]
    # The composed config, interpolations resolved, is the version's parameters.
    assert row["parameters"]["model"] == {"width": 64} and row["parameters"]["tag"] == "w64"
    assert row["parameters"]["learning_rate"] == 0.01 and row["parameters"]["config_file"] == "conf/config.yaml"
    assert row["eval_test"] == {"width": 64, "tag": "w64"} and row["metrics"]["loss"] == pytest.approx(0.64)
    # Each its own model_dir, which keeps the files that configured it.
    record = Path(row["model_dir"]) / ".mlpipeline" / "configs"
    assert Path(row["model_dir"]).name == "net-learning_rate=0.01,model=large"
    assert (record / "config.yaml").read_text() == (project.models / "conf" / "config.yaml").read_text()
    assert (record / "model" / "large.yaml").read_text() == "width: 64\n"
    assert "tag: w64" in (record / "config.resolved.yaml").read_text()


def test_editing_a_config_file_reruns_only_the_versions_it_configures(project: Project) -> None:
    hydra_project(project)
    assert project.run("-r", timeout=180).returncode == 0
    first = {row["version"]: row["run_id"] for row in project.results()}
    (project.models / "conf" / "model" / "large.yaml").write_text("width: 65\n")
    status = project.run("status", "--json")
    states = {row["version"]: row["state"] for row in json.loads(status.stdout)}
    assert states == {
        "learning_rate=0.1,model=small": "finished", "learning_rate=0.1,model=large": "stale",
        "learning_rate=0.01,model=small": "finished", "learning_rate=0.01,model=large": "stale",
    }  # fmt: skip
    result = project.run("-r", "-u", timeout=180)
    assert result.returncode == 0, result.output
    rerun = [row for row in project.results() if row["run_id"] not in first.values()]
    assert sorted(row["version"] for row in rerun) == ["learning_rate=0.01,model=large", "learning_rate=0.1,model=large"]
    assert {row["eval_test"]["width"] for row in rerun} == {65}
    assert "2 finished, 2 skipped by -u" in result.output


def test_gin_files_are_bound_in_each_versions_own_run(project: Project) -> None:
    project.write("models/gin/a.gin", "scale.factor = 2\n")
    project.write("models/gin/b.gin", "include 'a.gin'\nscale.factor = 5\nscale.offset = 1\n")
    project.script("scaled.py", GIN_SCRIPT, prelude=False)
    project.queue(["scaled.py"])
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    rows = finished(project)
    assert rows["a"]["eval_test"] == {"scaled": 2.0} and rows["b"]["eval_test"] == {"scaled": 6.0}
    assert rows["b"]["parameters"]["scale.factor"] == 5 and rows["b"]["parameters"]["scale.offset"] == 1
    assert rows["b"]["parameters"]["config_file"] == "gin/b.gin"
    kept = Path(rows["b"]["model_dir"]) / ".mlpipeline" / "configs"
    assert sorted(path.name for path in kept.iterdir()) == ["a.gin", "b.gin", "config.bindings.gin"]
    assert "scale.offset = 1" in (kept / "config.bindings.gin").read_text()
    # Editing a.gin reruns both (b includes it); a new file is a new version, found by the glob.
    (project.models / "gin" / "a.gin").write_text("scale.factor = 3\n")
    project.write("models/gin/c.gin", "scale.offset = 7\n")
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    latest = {row["version"]: row for row in project.results()}
    assert latest["a"]["eval_test"] == {"scaled": 3.0} and latest["c"]["eval_test"] == {"scaled": 8.0}
    assert latest["b"]["run_id"] != rows["b"]["run_id"]
    assert "3 finished" in result.output


def test_a_config_file_that_cannot_be_parsed_fails_its_version_alone_naming_file_and_line(project: Project) -> None:
    project.write("models/gin/good.gin", "scale.factor = 2\n")
    project.write("models/gin/bad.gin", "scale.factor = 2\nscale.offset = \n")
    project.write("models/gin/unknown.gin", "nothing.here = 1\n")  # parses; gin refuses it when bound
    project.script("scaled.py", GIN_SCRIPT, prelude=False)
    project.queue(["scaled.py"])
    result = project.run("-r", timeout=120)
    assert result.returncode == 1, result.output
    by_version = {row["version"]: row for row in project.results()}
    assert by_version["good"]["status"] == "finished"
    assert by_version["bad"]["status"] == "failed" and "gin/bad.gin: line 2" in by_version["bad"]["reason"]
    assert by_version["unknown"]["status"] == "failed" and "gin/unknown.gin" in by_version["unknown"]["reason"]
    assert "nothing" in by_version["unknown"]["reason"]
    assert "Traceback" not in project.log_text()


def test_a_broken_yaml_fails_its_version_and_test_mode_names_it(project: Project) -> None:
    hydra_project(project)
    (project.models / "conf" / "model" / "large.yaml").write_text("width: [64\n")
    result = project.run(timeout=180)  # test mode stops at the first failure, naming the file
    assert result.returncode == 1
    assert "large.yaml" in result.output and "learning_rate=0.1,model=large" in result.output
    result = project.run("-r", timeout=180)
    states = {row["version"]: row["status"] for row in project.results()}
    assert states["learning_rate=0.1,model=small"] == "finished" and states["learning_rate=0.1,model=large"] == "failed"


def test_the_example_project_runs_as_its_page_says(tmp_path: Path) -> None:
    root = tmp_path / "config files"
    shutil.copytree(REPO / "examples" / "config-files", root, ignore=shutil.ignore_patterns("outputs", "__pycache__"))
    example = Project.__new__(Project)
    example.root, example.models, example.outputs = root, root / "models", root / "models" / "outputs"
    dry = example.run(timeout=180)
    assert dry.returncode == 0 and "all 6 versions passed" in dry.output, dry.output
    real = example.run("-r", "-u", timeout=180)
    assert real.returncode == 0, real.output
    rows = finished(example)
    assert rows["small_noise"]["eval_test"]["mean"] == pytest.approx(1.0, abs=0.1)
    assert rows["learning_rate=0.05,model=flat"]["parameters"]["note"] == "a line of slope 0.5"


EXPERIMENTS_SCRIPT = '''
import os, time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Net(Model):
    def train_model(self, input_fn, steps):
        gate = os.path.join(os.getcwd(), "go")  # the test lets the first version end
        while self.current_version.get("wait") and not os.path.exists(gate):
            time.sleep(0.05)
        self.report(step=steps, total=steps, loss=float(self.current_version.get("v", 0)))

    def evaluate_model(self, input_fn, steps):
        return {"v": self.current_version.get("v")}


versions = Versions(dataloader=SplitDataLoader([1, 2], [1]), batch_size=1, epoc_count=1)
versions.add_config_files(%s)
MODEL = Net(versions)
'''


def experiments(project: Project, patterns: str, files: dict) -> None:
    for name, text in files.items():
        project.write(f"models/{name}", text)
    project.script("net.py", EXPERIMENTS_SCRIPT % patterns, prelude=False)
    project.queue(["net.py"])
    project.queue(["net.py"], test=True)


def test_a_file_added_while_the_queue_runs_is_run_and_a_sibling_edit_reruns_nothing_else(project: Project) -> None:
    experiments(project, '"e/*.yaml"', {"e/b.yaml": "v: 2\nwait: true\n", "e/c.yaml": "v: 3\n"})
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: any(event["event"] == "started" for event in project.journal()), what="b started")
    project.write("models/e/a.yaml", "v: 1\n")  # sorts first: before the versions already handled
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, output
    assert sorted(row["version"] for row in project.results()) == ["a", "b", "c"]  # each once
    assert "skipped" not in output
    # Editing c.yaml reruns c alone: its siblings are no files of its.
    (project.models / "e" / "c.yaml").write_text("v: 30\n")
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    assert [row["version"] for row in project.results()][3:] == ["c"]


def test_a_group_options_own_defaults_are_part_of_its_versions(project: Project) -> None:
    project.write("models/conf/config.yaml", "defaults:\n  - model: a\n  - _self_\nbatch_size: 1\nepoc_count: 1\n")
    project.write("models/conf/model/a.yaml", "defaults:\n  - base\ndepth_a: 1\n")
    project.write("models/conf/model/base.yaml", "depth: 3\n")
    project.write("models/conf/unused.yaml", "nothing: 1\n")
    experiments(project, '"conf/config.yaml"', {})
    assert project.run("-r", timeout=120).returncode == 0
    record = Path(project.results()[0]["model_dir"]) / ".mlpipeline" / "configs"
    assert (record / "model" / "base.yaml").read_text() == "depth: 3\n" and not (record / "unused.yaml").exists()
    (project.models / "conf" / "unused.yaml").write_text("nothing: 2\n")
    assert project.run("-r", "-u", timeout=60).stdout.count("finished") == 0  # nothing reran
    (project.models / "conf" / "model" / "base.yaml").write_text("depth: 30\n")
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0 and project.results()[-1]["parameters"]["model"]["depth"] == 30


def test_bad_files_fail_their_versions_alone_and_no_file_blocks_the_daemon(project: Project) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        for prev, name in zip("abcdef", "bcdefg")
    )
    experiments(project, '"e/*.yaml", "none/*.yaml"', {
        "e/good.yaml": "v: 1\n",
        "e/loader.yaml": "dataloader: foo\n",
        "e/size.yaml": "batch_size: abc\n",
        "e/bomb.yaml": bomb,
        "e/x.yaml": "v: 2\n", "e/x.gin": "",  # two files of one stem: named by their paths
        # The same bomb where only a defaults list names it: a group's option, a config of its own.
        "e/nested.yaml": "defaults:\n  - db: evil\n  - _self_\nv: 3\n", "e/db/evil.yaml": bomb,
        "e/plain.yaml": "defaults:\n  - parts/bomb\n  - _self_\nv: 4\n", "e/parts/bomb.yaml": bomb,
        "e/notes.md": "not a config",
    })  # fmt: skip
    os.mkfifo(project.models / "e" / "pipe.yaml")  # a FIFO's read would block for ever
    started = time.monotonic()
    result = project.run("-r", timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.output
    rows = {row["version"]: row for row in project.results()}
    assert rows["good"]["status"] == "finished" and rows["x"]["status"] == "finished"
    assert "DATALOADER must be a mlpipeline.helper.DataLoader, not str 'foo' (set by e/loader.yaml)" in rows["loader"]["reason"]
    assert "BATCH_SIZE must be a positive integer, not 'abc' (set by e/size.yaml)" in rows["size"]["reason"]
    assert "expand to more than 100,000 values" in rows["bomb"]["reason"]
    assert "db/evil.yaml, which its defaults list names: its aliases expand to more than 100,000 values" in rows["nested"]["reason"]
    assert "parts/bomb.yaml, which its defaults list names: its aliases expand" in rows["plain"]["reason"]
    assert "pipe.yaml is no regular file" in rows["pipe"]["reason"]
    assert "no YAML or gin file matches it" in project.log_text()
    assert "Traceback" not in project.log_text()
    status = project.run("status", timeout=30)  # reads the FIFO's version without blocking
    assert status.returncode == 0


def test_names_that_are_no_folder_names_keep_model_dirs_of_their_own(project: Project) -> None:
    experiments(project, '"one.yaml", overrides=["+tag=c/d,c_d"]', {"one.yaml": "v: 1\n"})
    assert project.run("-r", timeout=120).returncode == 0
    dirs = {row["version"]: row["model_dir"] for row in project.results()}
    assert sorted(dirs) == ["+tag=c/d", "+tag=c_d"] and len(set(dirs.values())) == 2
