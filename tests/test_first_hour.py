"""Issue 24: what a researcher meets in the first hour. Records that tell the truth about the
steps a version trained, a "fresh" run that is not said to be, and the rough edges of errors
and output; each found by running mlpipeline as a user would and reading what it wrote."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

STEPPING = '''
import os, signal
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Stepping(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.checkpoint = os.path.join(model_dir, "step.txt")

    def get_trained_step_count(self):
        if self.current_version["checkpoints"] and os.path.exists(self.checkpoint):
            return int(open(self.checkpoint).read())
        return None

    def train_model(self, input_fn, steps):
        version = self.current_version
        done = self.get_trained_step_count() or 0
        for _ in range(steps):
            done += 1
            if version["checkpoints"]:
                open(self.checkpoint, "w").write(str(done))
            if version["report"]:
                self.report(step=done, total=50, loss=1.0 / done)
            if done == version["fail_at"]:
                raise ValueError("diverged at step {}".format(done))
            if done == version["kill_at"]:
                os.kill(os.getpid(), signal.SIGKILL)

    def evaluate_model(self, input_fn, steps):
        return {"mse": 0.5}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader(list(range(50)), [0]), batch_size=1, epoc_count=1,
                    fail_at=0, kill_at=0, report=True, checkpoints=False)
%s
MODEL = Stepping(versions)
'''


def stepping(project, *lines):
    project.script("a.py", STEPPING % "\n".join(lines), prelude=False)
    project.queue(["a.py"])


def records(project):
    return {row["version"]: row for row in project.results()}


def test_a_version_that_ends_midway_is_recorded_with_the_steps_it_trained(project):
    stepping(
        project,
        'versions.addV("raises", fail_at=10, model_dir_suffix="raises")',
        'versions.addV("killed", kill_at=7, model_dir_suffix="killed")',
        'versions.addV("silent", fail_at=12, report=False, checkpoints=True, model_dir_suffix="silent")',
        'versions.addV("unknown", fail_at=12, report=False, model_dir_suffix="unknown")',
        'versions.addV("whole", model_dir_suffix="whole")',
    )
    result = project.run("-r")
    assert result.returncode == 1, result.output
    got = records(project)
    assert got["raises"]["status"] == "failed" and got["raises"]["steps"]["trained"] == 10
    assert got["killed"]["status"] == "failed" and got["killed"]["signal"] == "SIGKILL"
    assert got["killed"]["steps"] == {"trained": 7, "total": 50, "already_trained": None}
    assert got["silent"]["steps"]["trained"] == 12  # what its checkpoint says after the failure
    assert got["unknown"]["steps"]["trained"] is None  # no report, no checkpoint: not made up
    assert got["whole"]["steps"]["trained"] == 50
    output = project.output_text()
    assert "steps:          10 of 50" in output and "steps:          7 of 50" in output
    assert "steps:          unknown of 50" in output
    assert "50 of 50" in output.split("a.py:whole")[1]
    assert output.count("of 50") == 5


def test_a_fresh_run_that_continues_from_a_kept_checkpoint_says_so(project):
    stepping(
        project,
        'versions.addV("part", checkpoints=True, model_dir_suffix="part")',
        'versions.addV("done", checkpoints=True, model_dir_suffix="done")',
    )
    for name, step in (("part", 30), ("done", 50)):
        folder = project.outputs / "model_ckpts" / f"a-{name}"
        folder.mkdir(parents=True)
        (folder / "step.txt").write_text(str(step))
    result = project.run("-r")
    assert result.returncode == 0, result.output
    got = records(project)
    assert got["part"]["continued_from"] == 30 and got["part"]["steps"] == {"trained": 20, "total": 50, "already_trained": 30}
    assert got["done"]["continued_from"] == 50 and got["done"]["steps"]["trained"] == 0
    log = project.log_text()
    assert "a.py:part continuing from step 30, not fresh (20 steps to go): its model_dir was not cleaned" in log
    assert "a.py:done continuing from step 50, not fresh (nothing left to train)" in log
    assert 'docs/modes.md ("Starting over")' in log
    assert "continuing from step 30" in result.output  # the console too
    assert "continued:      from step 30, not fresh" in project.output_text()
    # A resumed run (-u) is no surprise: nothing is said.
    again = project.run("-r", "-u", "--retry-failed")
    assert "continuing from step" not in again.output


def test_a_fresh_run_whose_clean_model_dir_left_the_checkpoint_says_so_not_that_it_was_not_cleaned(project):
    stepping(project, 'versions.addV("part", checkpoints=True, model_dir_suffix="part")')
    script = project.models / "a.py"
    script.write_text(script.read_text().replace("MODEL = Stepping(versions)", "MODEL = Stepping(versions, allow_delete_model_dir=True)"))
    folder = project.outputs / "model_ckpts" / "a-part"
    folder.mkdir(parents=True)
    (folder / "step.txt").write_text("30")
    assert project.run("-r").returncode == 0
    log = project.log_text()
    assert "a.py:part continuing from step 30, not fresh (20 steps to go): its model's clean_model_dir left the checkpoint" in log
    assert "allow_delete_model_dir is False" not in log + project.output_text()


def test_a_resumed_run_whose_model_knows_no_steps_trained_says_it_trains_from_the_start(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nretries = 1\n')
    stepping(project, 'versions.addV("nockpt", kill_at=7)', 'versions.addV("ckpt", kill_at=7, checkpoints=True, model_dir_suffix="ckpt")')
    result = project.run("-r")
    said = "a.py:nockpt resuming, but its model says no steps are trained yet (get_trained_step_count() returned None): all 50 steps train from the start"
    assert said in project.log_text() and said in " ".join(result.output.split())
    assert "a.py:ckpt resuming, but" not in project.log_text()
    assert [(row["version"], row["attempt"], row["status"]) for row in project.results()][-1] == ("ckpt", 2, "finished")


@pytest.mark.parametrize("access", ['self.current_version["dropout_rate"]', "self.current_version.dropout_rate"])
def test_a_missing_parameter_names_the_version_and_its_parameters_without_our_frames(project, access):
    stepping(project, 'versions.addV("v", width=8)')
    script = project.models / "a.py"
    script.write_text(script.read_text().replace("        done = self.get_trained_step_count() or 0\n", f"        {access}\n        done = 0\n"))
    result = project.run("-r")
    assert result.returncode == 1
    reason = records(project)["v"]["reason"]
    kind = "KeyError" if "[" in access else "AttributeError"
    assert f"a.py:v failed in train_model: {kind}: version 'v' has no parameter 'dropout_rate'" in reason
    assert "its parameters: batch_size, checkpoints, dataloader, epoc_count, fail_at, kill_at, learning_rate" in reason
    assert "width" in reason
    log = project.log_text()
    assert access in log  # the user's line is in the traceback
    assert "script_support" not in log and "__missing__" not in log and "__getattr__" not in log


@pytest.mark.parametrize(
    "queue, said",
    [
        ('scripts = [\n  "a.py"\n  "b.py",\n]\n', 'models.config:3: not valid TOML: a comma is likely missing after "a.py" on line 3'),
        ('scripts = ["a.py" "b.py"]\n', 'models.config:2: not valid TOML: a comma is likely missing after "a.py" on line 2'),
        ('scripts = [\n  "a.py",\n  "b.py"\n', "models.config:2: not valid TOML: the list opened on line 2 is never closed: a ']' is missing"),
        ("scripts = [a.py]\n", 'models.config:2: not valid TOML: a.py is not a TOML value: names are quoted, "a.py"'),
    ],
)
def test_a_toml_slip_is_named_on_its_line(project, queue, said):
    stepping(project, 'versions.addV("v")')
    project.write("models.config", "[WHITELISTED_MODELS]\n" + queue)
    result = project.run("-r")
    assert result.returncode == 2
    assert said in result.output
    assert "Traceback" not in result.output


def test_a_misspelled_script_and_a_project_one_folder_up_are_pointed_at(project):
    stepping(project, 'versions.addV("v")')
    project.queue(["a_py.py", "b.py"])
    (project.models / "sub").mkdir()
    (project.models / "sub" / "b2.py").write_text("")
    result = project.run("-r")
    assert result.returncode == 2
    assert "a_py.py does not exist in" in result.output and "did you mean 'a.py'?" in result.output
    from_models = subprocess.run(
        [sys.executable, "-m", "mlpipeline", "status"], cwd=project.models, capture_output=True, text=True, env=project._env(None)
    )
    assert from_models.returncode == 2
    assert f"../mlp.config exists: run mlpipeline in {project.root}, or give -C .." in from_models.stderr + from_models.stdout


def test_a_piped_run_ends_each_version_with_its_last_report(project):
    stepping(project, 'versions.addV("v")', 'versions.addV("w", fail_at=20)')
    result = project.run("-r")  # stdout is a pipe here, as under nohup or | tee
    assert result.returncode == 1
    assert re.search(r"■ a\.py:v finished in \d+\.\d\d s \(step 50 loss=0\.02\)", result.stdout), result.stdout
    assert re.search(r"■ a\.py:w failed in \d+\.\d\d s \(step 20 loss=0\.05\)", result.stdout), result.stdout
    assert "queue: 1 finished, 1 failed" in result.stdout


def test_words_in_the_first_hour(project):
    stepping(project, 'versions.addV("v", kill_at=5)')
    project.script("b.py", STEPPING % 'versions.addV("x")', prelude=False)
    project.queue(["a.py", "b.py"])
    result = project.run("-r")
    assert "1 script not listed yet (counted once imported)" in result.stdout
    assert "not opened yet" not in result.stdout
    docs = (REPO / "docs" / "configuration.md").read_text()
    assert "is not supported by this release" not in docs


def test_a_cancel_is_no_error_in_the_log(project):
    stepping(project, 'versions.addV("v", kill_at=0)')
    script = project.models / "a.py"
    script.write_text(script.read_text().replace("        for _ in range(steps):\n", "        import time\n        time.sleep(60)\n        for _ in range(steps):\n"))
    daemon = project.start("-r")
    project.wait_for(lambda: "a.py:v started" in project.log_text(), what="v to start")
    assert project.run("cancel", "a.py:v").returncode == 0
    daemon.communicate(timeout=60)
    log = project.log_text()
    assert re.search(r" WARNING a\.py:v cancelled in \d+\.\d\d s", log), log
    assert " ERROR " not in log


BESTS = '''
import os
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Curve(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.tries = os.path.join(model_dir, "tries")

    def train_model(self, input_fn, steps):
        tries = int(open(self.tries).read()) + 1 if os.path.exists(self.tries) else 1
        open(self.tries, "w").write(str(tries))
        curve = self.current_version["curve"][tries - 1]
        for step, (loss, accuracy) in enumerate(curve, 1):
            self.report(step=step, loss=loss, accuracy=accuracy, note="text")
        if tries == 1 and self.current_version["fail_first"]:
            raise RuntimeError("first attempt fails")

    def evaluate_model(self, input_fn, steps):
        return {}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1, fail_first=False)
versions.addV("plain", curve=[[(0.5, 0.1), (0.2, 0.9), (0.4, 0.3)]], model_dir_suffix="plain")
versions.addV("retried", fail_first=True, curve=[[(0.3, 0.2), (0.1, 0.4)], [(0.6, 0.8), (0.7, 0.5)]], model_dir_suffix="retried")
MODEL = Curve(versions)
'''


def test_compare_best_reads_the_best_kept_in_each_row_as_its_history_would_give_it(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nretries = 1\n')
    project.script("a.py", BESTS, prelude=False)
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    rows = {row["version"]: row for row in project.results() if row["status"] == "finished"}
    assert rows["plain"]["best"] == {"loss": 0.2, "accuracy": 0.9}
    # The retry resumed in the same model_dir: its best is over both attempts' reports.
    assert rows["retried"]["best"] == {"loss": 0.1, "accuracy": 0.8}
    from_rows = json.loads(project.run("compare", "--json", "--best").stdout)
    results = project.outputs / "results.jsonl"
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    results.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "best"}) + "\n" for row in lines))
    from_histories = json.loads(project.run("compare", "--json", "--best").stdout)  # as for rows of an older release
    assert from_rows == from_histories
    best = {row["version"]: row for row in from_rows["rows"]} if isinstance(from_rows, dict) else {row["version"]: row for row in from_rows}
    assert best["a.py:plain"]["best.loss"] == 0.2 and best["a.py:retried"]["best.accuracy"] == 0.8
