"""SPEC 5, test mode: every version, 1 step, temporary dirs, stop at the first error, write nothing."""
from pathlib import Path

from conftest import versions_code

from mlpipeline.utils import ExecutionModeKeys


def test_runs_every_version_in_order_one_step_each_in_temporary_dirs(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")', 'versions.addV("v0", order=-1)'))
    project.script("b.py", versions_code('versions.addV("only")'))
    project.queue(["b.py", "a.py"], test=True)
    result = project.run()
    assert result.returncode == 0, result.output
    trained = [(c["script"], c["version"], c["steps"]) for c in project.calls("train")]
    assert trained == [("b.py", "only", 1), ("a.py", "v0", 1), ("a.py", "v1", 1), ("a.py", "v2", 1)]
    assert [c["steps"] for c in project.calls("eval")] == [1] * 8
    pre = project.calls("pre")
    assert {c["mode"] for c in pre} == {ExecutionModeKeys.TEST}
    dirs = [c["model_dir"] for c in pre]
    assert len(set(dirs)) == 4  # a fresh one per version
    assert not any(Path(d).exists() for d in dirs)  # removed after
    assert not any(str(project.root) in d for d in dirs)
    assert not project.outputs.exists()  # nothing at all under outputs/
    assert "all 4 versions passed" in result.output
    assert "b.py:only" in result.output and "passed" in result.output


def test_first_exception_stops_with_the_users_traceback(project):
    project.script(
        "a.py",
        versions_code('versions.addV("good")', 'versions.addV("bad", fail_in="train")', 'versions.addV("never")'),
    )
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.output
    assert "RuntimeError: deliberate failure in train" in result.output
    assert "a.py:bad failed in train_model" in result.output
    assert str(project.models / "a.py") in result.output  # the user's file, in the traceback
    assert "mlpipeline/executors/" not in result.output  # our frames are left out
    assert [c["version"] for c in project.calls("train")] == ["good", "bad"]
    assert not project.outputs.exists()


BROKEN_STEP_COUNT = """
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class G(Model):
    def get_trained_step_count(self):
        return self.current_version["answer"]

    def train_model(self, input_fn, steps):
        pass

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([1, 2], [1]), batch_size=1, epoc_count=1)
versions.addV("none", answer=None)
versions.addV("text", answer="5")
MODEL = G(versions)
"""


def test_get_trained_step_count_is_checked_as_a_real_run_checks_it(project):
    # A slip in it would otherwise pass the dry run and fail every version of -r.
    project.script("g.py", BROKEN_STEP_COUNT, prelude=False)
    project.queue(["g.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert [line for line in result.output.splitlines() if "g.py:none" in line and "passed" in line]
    assert "g.py:text: get_trained_step_count() returned '5'; it must return None or a whole number of steps" in result.output


def test_a_parameter_named_as_a_slip_of_one_mlpipeline_reads_is_pointed_out(project):
    project.script("a.py", versions_code('versions.addV("a", batchsize=3, width=2, border=1)', 'versions.addV("b", batchsize=4)', 'versions.addV("c", epoch_count=2)'))
    project.queue(["a.py"], test=True)
    said = "a.py: versions 'a' and 1 more set 'batchsize', which mlpipeline does not read; did you mean 'batch_size'? (kept as the script's own parameter)"
    result = project.run()
    assert result.returncode == 0 and said in " ".join(result.output.split())
    assert "'epoch_count', which mlpipeline does not read; did you mean 'epoc_count'?" in result.output
    assert "'width'" not in result.output and "'border'" not in result.output  # the script's own, no slips
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0 and said in project.log_text()


def test_missing_parameter_fails_before_any_training(project):
    project.script("a.py", versions_code('versions.addV("fine")'))
    project.script("b.py", versions_code('versions.addV("fine")', 'versions.addV("no_batch", batch_size=None)',
                                         defaults="learning_rate=0.1, dataloader=Data(), epoc_count=1"))
    project.queue(["a.py", "b.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "b.py:no_batch has no BATCH_SIZE" in result.output
    assert "b.py:fine has no BATCH_SIZE" in result.output
    assert project.calls("train") == []


def test_script_without_model(project):
    project.script("a.py", "x = 1\n", prelude=False)
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py defines no MODEL" in result.output


def test_script_with_a_syntax_error_names_the_line(project):
    project.script("a.py", "import os\n\ndef broken(:\n    pass\n", prelude=False)
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py:3: syntax error" in result.output


def test_model_that_is_not_a_model(project):
    project.script("a.py", "MODEL = object()\n", prelude=False)
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py: MODEL is an object, not a mlpipeline.helper.Model" in result.output


def test_script_that_raises_at_import(project):
    project.script("a.py", "import json\nraise ImportError('no module named cuda_magic')\n", prelude=False)
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py failed in import: ImportError: no module named cuda_magic" in result.output
    assert 'a.py", line 2' in result.output


def test_unknown_version_in_the_test_queue(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py:v9"], test=True)
    result = project.run()
    assert result.returncode == 2  # a config error, named with its line
    assert "models_test.config:5: a.py has no version 'v9' (its versions: v1)" in result.output
    assert project.calls("train") == []


def test_only_runs_the_named_version(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.script("b.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "b.py"], test=True)
    result = project.run("--only", "a.py:v2")
    assert result.returncode == 0, result.output
    assert [(c["script"], c["version"]) for c in project.calls("train")] == [("a.py", "v2")]


def test_version_that_kills_its_interpreter(project):
    project.script("a.py", versions_code('versions.addV("v1", exit_in="train", exit_code=7)'))
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py:v1: its process exited with status 7" in result.output


def test_empty_test_queue_is_fine(project):
    project.queue([], test=True)
    result = project.run()
    assert result.returncode == 0
    assert "nothing to test" in result.output


PDB_SCRIPT = '''
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Broken(Model):
    def train_model(self, data, steps):
        secret = 41 + len(data)
        raise ValueError("broken at %d" % secret)

    def evaluate_model(self, data, steps):
        return {}


versions = Versions(0.1, SplitDataLoader([1], [1]), 1, 1)
versions.addV("v")
MODEL = Broken(versions)
'''


def test_pdb_opens_the_debugger_at_the_users_exception(project):
    import subprocess

    project.script("broken.py", PDB_SCRIPT, prelude=False)
    project.queue(["broken.py"], test=True)
    result = subprocess.run(
        project.command("--pdb"), input="p secret\np self.current_version['name']\nq\n",
        capture_output=True, text=True, timeout=90, env=project._env(None),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ValueError: broken at 42" in output  # the child's failure, as without --pdb
    assert "--pdb: running broken.py:v again in this process" in output
    assert "(Pdb) 42" in output and "(Pdb) 'v'" in output  # the user's frame, its locals
    assert 'raise ValueError("broken at %d" % secret)' in output
    assert project.run("-r", "--pdb").returncode == 2


def test_pdb_says_so_when_a_version_died_without_an_exception(project):
    project.script("a.py", versions_code('versions.addV("dies", exit_in="train", exit_code=4)'))
    project.queue(["a.py"], test=True)
    result = project.run("--pdb")
    assert result.returncode == 1, result.output  # mlpipeline itself does not die of it
    assert "--pdb: a.py:dies raised no exception of its code to open the debugger at" in result.output
