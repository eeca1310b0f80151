"""SPEC 4: scripts written for the original package's 1.x releases (1.1a3 to 1.1a3.post8) run
unmodified, in test mode and in execution mode. One script per style of those releases, each
written as a user of that release wrote it, with a neighbour module (probe.py) that records
what the hooks saw."""
import json
import math
import textwrap

import pytest

from mlpipeline.utils import ExecutionModeKeys, Metric, MetricContainer, ModeKeys, Versions, console_colors

PROBE = '''
import json, os

CALLS = os.path.join(os.getcwd(), "calls.jsonl")


def record(hook, **fields):
    fields["hook"] = hook
    with open(CALLS, "a") as handle:
        handle.write(json.dumps(fields) + "\\n")
'''

# Release 1.1a3 to 1.1a3.post1: the README's API as those releases had it. The hook takes two
# parameters, as every 1.x release called it; the version parameters of those releases
# (hooks, classes) and the public `versions` mapping are used; logging passes log_to_file and
# colour modifiers.
RELEASE_POST1 = '''
import logging
import os

from mlpipeline.utils import add_script_dir_to_PATH
add_script_dir_to_PATH()

from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import ExecutionModeKeys, ModeKeys, Versions, console_colors, log, version_parameters
from probe import record


class Numbers(DataLoader):
    def __init__(self, count):
        self.count = count
        self.log("numbers ready", log_to_file=True)

    def get_train_input(self, mode=ModeKeys.TRAIN, **kargs):
        record("input", mode=mode, evaluating=mode == ExecutionModeKeys.TEST)
        return list(range(self.count))

    def get_test_input(self):
        return list(range(100, 100 + self.count // 2))

    def get_train_sample_count(self):
        return self.count

    def get_test_sample_count(self):
        return self.count // 2


class Summer(Model):
    def __init__(self, versions, **args):
        super().__init__(versions, **args)
        self.total = 0

    def pre_execution_hook(self, version, model_dir):
        self.current_version = version
        self.model_dir = model_dir
        self.log("{}running{} {}".format(console_colors.MEGENTA_FG, console_colors.RESET, version[version_parameters.NAME]),
                 modifier_1=console_colors.BLACK_BG)

    def get_current_version(self):
        return self.current_version

    def get_trained_step_count(self):
        path = os.path.join(self.model_dir, "steps")
        return int(open(path).read()) if os.path.exists(path) else None

    def clean_model_dir(self, model_dir):
        record("clean")

    def train_model(self, input_fn, steps):
        version = self.get_current_version()
        self.total = sum(input_fn[:steps])
        with open(os.path.join(self.model_dir, "steps"), "w") as handle:
            handle.write(str(steps))
        log("trained {} steps".format(steps), logging.INFO, True)
        record("train", version=version[version_parameters.NAME], steps=steps,
               hooks=version[version_parameters.HOOKS], use_all=version[version_parameters.USE_ALL_CLASSES],
               classes=version[version_parameters.CLASSES_COUNT], offset=version[version_parameters.CLASSES_OFFSET],
               width=version["width"], lr=version[version_parameters.LEARNING_RATE])
        self.add_to_summery("summed {}".format(self.total))
        return "sum {}".format(self.total)

    def evaluate_model(self, input_fn, steps):
        return {"total": self.total, "first": input_fn[0], "steps": steps}


v = Versions(0.01, Numbers(40), 10, 2, hooks=None, use_all_classes=True, classes_count=3)
v.addV("wide", custom_paramters={"width": 8})
v.addV("narrow", model_dir_suffix="narrow", classes_count=2, classes_offset=1, custom_paramters={"width": 2})
assert sorted(v.versions) == ["narrow", "wide"]
assert v.versions_defaults[version_parameters.CLASSES_COUNT] == 3
MODEL = Summer(versions=v, allow_delete_model_dir=True)
'''

# Release 1.1a3.post3 to 1.1a3.post7: MetricContainer in both constructor forms, epoch
# tracking, log_metrics, a container returned from evaluate_model, copy_related_files.
RELEASE_POST7 = '''
import os

from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import ExecutionModeKeys, MetricContainer, Versions
from probe import record


class Ten(DataLoader):
    def __init__(self):
        self.add_to_summery("the numbers 0 to 9")

    def get_train_sample_count(self):
        return 10

    def get_test_sample_count(self):
        return 2

    def get_train_input(self, **kargs):
        return [float(i) for i in range(10)]

    def get_test_input(self):
        return [1.0, 3.0]


class Averager(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode=ExecutionModeKeys.TEST):
        self.current_version = version
        self.model_dir = model_dir

    def get_current_version(self):
        return self.current_version

    def get_trained_step_count(self):
        return None

    def train_model(self, input_fn, steps):
        metrics = MetricContainer(metrics=[{"metrics": ["loss", "error"]},
                                           {"metrics": ["grad"], "track_average_epoc_count": 2}],
                                  track_average_epoc_count=3)
        seen = MetricContainer(["samples"], track_average_epoc_count=5)
        for epoc in range(4):
            for value in input_fn[:steps]:
                metrics.loss.update(value + epoc)
                metrics.error.update(2 * (value + epoc), 2)
                metrics.grad.update(1)
                seen.samples.update(1, 0)
            text = metrics.log_metrics(["loss", "grad"])
            metrics.reset_epoc()
        metrics.reset()
        try:
            metrics.loss = 1.0
            refused = False
        except TypeError:
            refused = True
        loss = metrics.loss
        record("train", steps=steps, text=text, refused=refused, window=loss.track_value_list,
               average=loss.get_tracking_average(), delta=loss.get_tracking_delta(),
               stdev=loss.get_tracking_stdev(), error_window=metrics.error.track_value_list,
               grad_window=len(metrics.grad.track_value_list), after_reset=loss.avg(),
               samples=seen.samples.value, summery=self.current_version["dataloader"].get_dataloader_summery())
        copied = self.copy_related_files(os.path.join(self.model_dir, "code"))
        record("copied", files=sorted(os.path.relpath(path, self.model_dir) for path in copied))

    def evaluate_model(self, input_fn, steps):
        result = MetricContainer(["mean"])
        for value in input_fn[:steps]:
            result.mean.update(value)
        return result


v = Versions(0.1, Ten(), 5, 2)
v.addV("only")
MODEL = Averager(versions=v)
'''

# Release 1.1a3.post8: the Experiment form.
RELEASE_POST8 = '''
import os

from mlpipeline.helper import DataLoader, Experiment
from mlpipeline.utils import ExecutionModeKeys, MetricContainer, Versions, copy_related_files, version_parameters
from probe import record


class Loader(DataLoader):
    def __init__(self):
        self.log("creating dataloader")

    def get_train_sample_count(self):
        return 30

    def get_test_sample_count(self):
        return 10

    def get_train_input(self, **kargs):
        return lambda: "train input"

    def get_test_input(self):
        return lambda: "test input"


class Trial(Experiment):
    def __init__(self, versions, **args):
        super().__init__(versions, **args)

    def pre_execution_hook(self, version, experiment_dir, exec_mode=ExecutionModeKeys.TEST):
        self.current_version = version
        self.experiment_dir = experiment_dir

    def get_current_version(self):
        return self.current_version

    def get_trained_step_count(self):
        return None

    def clean_experiment_dir(self, experiment_dir):
        record("clean", folder=os.path.basename(experiment_dir))

    def train_loop(self, input_fn, steps):
        version = self.current_version
        record("train", version=version.name, steps=steps, lr=version.learning_rate,
               hyperparameter=version["hyperparameter"], input=input_fn(),
               copied=sorted(os.listdir(self.experiment_dir)))
        copy_related_files(self, "exports")

    def evaluate_loop(self, input_fn, steps):
        input_fn()
        metrics = MetricContainer(["a", "b"])
        metrics.a.update(10, 1)
        metrics.b.update(2, 1)
        return metrics


dl = Loader()
v = Versions(dl, 3, 1, learning_rate=0.01)
v.add_version("version1", hyperparameter="a hyperparameter")
v.add_version("version2", custom_paramters={"hyperparameter": None}, experiment_dir_suffix="second")
EXPERIMENT = Trial(versions=v, allow_delete_experiment_dir=True)
'''


def old_project(project, name, source):
    project.write("models/probe.py", PROBE)
    project.script(name, textwrap.dedent(source), prelude=False)
    project.queue([name])
    project.queue([name], test=True)
    return project


def both_modes(project):
    """Test mode, then execution mode; the hook calls of each."""
    dry = project.run()
    assert dry.returncode == 0, dry.output
    dry_calls = project.calls()
    (project.root / "calls.jsonl").unlink()
    real = project.run("-r")
    assert real.returncode == 0, real.output
    return dry, dry_calls, real, project.calls()


def test_a_script_of_release_post1_runs_in_both_modes(project):
    old_project(project, "summer.py", RELEASE_POST1)
    dry, dry_calls, real, calls = both_modes(project)
    assert "all 2 versions passed" in dry.output
    for run_calls, steps in ((dry_calls, [1, 1]), (calls, [math.ceil(2 * 40 / 10)] * 2)):
        train = [c for c in run_calls if c["hook"] == "train"]
        assert [c["version"] for c in train] == ["wide", "narrow"]
        assert [c["steps"] for c in train] == steps
        assert [(c["hooks"], c["use_all"], c["classes"], c["offset"], c["width"], c["lr"]) for c in train] == [
            (None, True, 3, None, 8, 0.01),
            (None, True, 2, 1, 2, 0.01),
        ]
        # The original asked for the evaluation input with ExecutionModeKeys.TEST.
        inputs = [(c["mode"], c["evaluating"]) for c in run_calls if c["hook"] == "input"]
        assert inputs == [("Train", False), ("Test", True)] * 2
    results = {row["version"]: row for row in project.results()}
    assert {row["status"] for row in results.values()} == {"finished"}
    assert results["wide"]["eval_test"] == {"total": sum(range(8)), "first": 100, "steps": 20}
    assert results["narrow"]["parameters"]["classes_count"] == 2
    assert "hooks" not in results["narrow"]["parameters"]  # read as None, not stored
    assert "summed 28" in results["wide"]["model_summary"]
    assert [c["hook"] for c in calls].count("clean") == 2  # allow_delete_model_dir, fresh runs
    log = project.log_text()
    assert "running wide" in log and "trained 8 steps" in log and "numbers ready" in log
    assert "\x1b" not in log


def test_a_script_of_release_post7_with_metric_containers_runs_in_both_modes(project):
    old_project(project, "averager.py", RELEASE_POST7)
    dry, dry_calls, real, calls = both_modes(project)
    for run_calls, steps in ((dry_calls, 1), (calls, 4)):
        (train,) = [c for c in run_calls if c["hook"] == "train"]
        assert train["steps"] == steps
        # Each epoch's average of value + epoch over the first `steps` values.
        epochs = [sum(range(steps)) / steps + epoc for epoc in range(4)]
        assert train["window"] == pytest.approx(epochs[-3:])  # a window of 3 epochs
        assert train["error_window"] == pytest.approx(epochs[-3:])  # values of 2x with count 2
        assert train["average"] == pytest.approx(sum(epochs[-3:]) / 3)
        assert train["delta"] == pytest.approx(2.0) and train["stdev"] == pytest.approx(1.0)
        assert train["grad_window"] == 2  # the group's own window
        assert train["after_reset"] == 0 and train["refused"] is True
        assert train["samples"] == 4 * steps
        # log_metrics() shows avg(): everything since the last reset(), here all four epochs.
        assert train["text"] == f"loss: {sum(epochs) / 4:.4f}    grad: 1.0000    "
        assert train["summery"] == "the numbers 0 to 9\n"
        copied = [c for c in run_calls if c["hook"] == "copied"][0]["files"]
        assert copied == ["code/averager.py", "code/probe.py"]
    (row,) = project.results()
    assert row["status"] == "finished"
    # A MetricContainer from evaluate_model is recorded as each metric's average.
    assert row["eval_train"] == {"mean": 4.5} and row["eval_test"] == {"mean": 2.0}
    assert "loss: 3.0000    grad: 1.0000" in project.log_text()


def test_a_script_of_release_post8_in_the_experiment_form_runs_in_both_modes(project):
    old_project(project, "sample_experiment.py", RELEASE_POST8)
    dry, dry_calls, real, calls = both_modes(project)
    assert "all 2 versions passed" in dry.output
    for run_calls, steps in ((dry_calls, 1), (calls, 10)):
        train = [c for c in run_calls if c["hook"] == "train"]
        assert [(c["version"], c["steps"], c["lr"], c["hyperparameter"], c["input"]) for c in train] == [
            ("version1", steps, 0.01, "a hyperparameter", "train input"),
            ("version2", steps, 0.01, None, "train input"),
        ]
        # As release post8 did, the script and what it imported from beside it are in the
        # experiment's folder before its first hook.
        assert all({"sample_experiment.py", "probe.py"} <= set(c["copied"]) for c in train), train
    assert [c["folder"] for c in calls if c["hook"] == "clean"] == ["sample_experiment-version1", "sample_experiment-second"]
    results = {row["version"]: row for row in project.results()}
    assert {row["status"] for row in results.values()} == {"finished"}
    assert results["version1"]["eval_test"] == {"a": 10.0, "b": 2.0}
    # That release gave each version a folder of its own: the version's name, or the suffix.
    assert results["version1"]["model_dir"].endswith("sample_experiment-version1")
    assert results["version2"]["model_dir"].endswith("sample_experiment-second")
    assert results["version1"]["parameters"]["learning_rate"] == 0.01
    exports = project.root / "exports"
    assert sorted(p.name for p in exports.iterdir()) == ["probe.py", "sample_experiment.py"]


def test_a_project_of_release_post8_migrates_and_runs(project):
    """experiments_dir, experiments.config and [WHITELISTED_EXPERIMENTS], as that release had them."""
    project.write("mlp.config", "# where the experiments are\n[MLP]\nexperiments_dir=experiments\n")
    queue = (
        "[MLP]\nuse_blacklist=False\n\n[BLACKLISTED_EXPERIMENTS]\n\n"
        "[WHITELISTED_EXPERIMENTS]\n# the one experiment\nsample_experiment.py\n"
    )
    project.write("experiments.config", queue)
    project.write("experiments_test.config", queue)
    project.write("experiments/probe.py", PROBE)
    project.write("experiments/sample_experiment.py", RELEASE_POST8)
    refused = project.run()
    assert refused.returncode == 2
    assert 'models_dir = "experiments"    # experiments_dir in release 1.1a3.post8' in refused.output
    assert "mlpipeline migrate-config" in refused.output

    migrated = project.run("migrate-config")
    assert migrated.returncode == 0, migrated.output
    assert "models.config: written as TOML from experiments.config" in migrated.output
    assert (project.root / "experiments.config").read_text() == queue  # left as it was
    models_config = (project.root / "models.config").read_text()
    assert "[WHITELISTED_MODELS]    # [WHITELISTED_EXPERIMENTS] in release 1.1a3.post8" in models_config
    assert "# the one experiment" in models_config

    dry = project.run()
    assert dry.returncode == 0 and "all 2 versions passed" in dry.output, dry.output
    real = project.run("-r")
    assert real.returncode == 0, real.output
    outputs = project.root / "experiments" / "outputs"
    rows = [json.loads(line) for line in (outputs / "results.jsonl").read_text().splitlines()]
    assert [(row["version"], row["status"]) for row in rows] == [("version1", "finished"), ("version2", "finished")]


def test_a_missing_models_config_beside_experiments_config_says_to_migrate(project):
    project.write("experiments.config", "[MLP]\nuse_blacklist=False\n")
    result = project.run("-r")
    assert result.returncode == 2
    assert "experiments.config is release 1.1a3.post8's name for it: `mlpipeline migrate-config` writes models.config" in result.output
    project.write("mlp.config", '[MLP]\nexperiments_dir = "models"\n')
    result = project.run("-r")
    assert result.returncode == 2
    assert "mlp.config:2: 'experiments_dir' is not a key of [MLP]; did you mean 'models_dir'?" in result.output


# Things scripts of the Model form did that the original let pass: an __init__ that skips
# super().__init__(), a version put into the `versions` mapping by hand, a fractional sample
# count, Model.log's second argument (log_to_file) given positionally, a script in a
# subfolder importing a module from the top of models_dir, the `name` the original set.
LENIENT = '''
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import ExecutionModeKeys, Versions
from shared_code import record


class Split(DataLoader):
    def get_train_sample_count(self):
        return 10 * 0.75

    def get_test_sample_count(self):
        return 2

    def get_train_input(self, **kargs):
        return None

    def get_test_input(self):
        return None


class Bare(Model):
    def __init__(self, versions):
        self.versions = versions

    def pre_execution_hook(self, version, model_dir, exec_mode=ExecutionModeKeys.TEST):
        self.current_version = version

    def get_trained_step_count(self):
        return None

    def train_model(self, input_fn, steps):
        self.log("steps: ", steps)
        record("train", version=self.current_version["name"], steps=steps, name=self.name)

    def evaluate_model(self, input_fn, steps):
        return {"steps": steps}


v = Versions(0.1, Split(), 2, 1)
v.addV("v")
v.versions["v_copy"] = dict(v.getVersion("v"), name="v_copy", order=None)
MODEL = Bare(v)
'''


def test_what_the_original_let_scripts_do_still_works(project):
    project.write("models/shared_code.py", PROBE)
    project.script("sub/lenient.py", LENIENT, prelude=False)
    project.queue(["sub/lenient.py"])
    project.queue(["sub/lenient.py"], test=True)
    dry, dry_calls, real, calls = both_modes(project)
    assert "all 2 versions passed" in dry.output
    for run_calls, steps in ((dry_calls, 1), (calls, 4)):  # ceil(1 * 7.5 / 2)
        assert [(c["version"], c["steps"], c["name"]) for c in run_calls] == [
            ("v", steps, "models/sub/lenient.py"),
            ("v_copy", steps, "models/sub/lenient.py"),
        ]
    results = {row["version"]: row for row in project.results()}
    assert {row["status"] for row in results.values()} == {"finished"}
    assert results["v"]["eval_train"] == {"steps": 7.5}  # the count as given, as the original did
    assert results["v"]["steps"]["total"] == 4
    lines = [line for line in project.log_text().splitlines() if "steps: " in line]
    assert lines and all(" INFO " in line for line in lines), lines  # not a level taken from the steps


TENSORFLOW1 = '''
import tensorflow as tf

from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions


class Data(DataLoader):
    def __init__(self):
        pass

    def get_train_input(self, **kargs):
        return None

    def get_test_input(self):
        return None

    def get_train_sample_count(self):
        return 1

    def get_test_sample_count(self):
        return 1


class Graph(Model):
    def pre_execution_hook(self, version, model_dir):
        self.version = version

    def train_model(self, input_fn, steps):
        if self.version["name"] == "ported":  # what the message says to do
            tf.compat.v1.disable_eager_execution()
            with tf.compat.v1.Session() as session:
                assert session.run(tf.constant(1)) == 1
        elif self.version["name"] == "session":
            with tf.Session() as session:
                session.run(tf.constant(1))
        else:
            tf.estimator.Estimator(model_fn=None)

    def evaluate_model(self, input_fn, steps):
        return {}


v = Versions(0.1, Data(), 1, 1)
v.addV("ported")
v.addV("session")
v.addV("estimator")
MODEL = Graph(v)
'''


def test_tensorflow1_code_fails_with_what_to_change(project):
    pytest.importorskip("tensorflow")
    old_project(project, "graph.py", TENSORFLOW1)
    dry = project.run(timeout=180)
    assert dry.returncode == 1
    assert "tf.Session is TensorFlow 1 API: write tf.compat.v1.Session" in dry.output
    real = project.run("-r", timeout=180)
    assert real.returncode == 1, real.output
    results = {row["version"]: row for row in project.results()}
    assert [results[name]["status"] for name in ("ported", "session", "estimator")] == ["finished", "failed", "failed"]
    assert "tf.compat.v1.disable_eager_execution()" in results["session"]["reason"]
    assert "tf.estimator was removed in TensorFlow 2.16" in results["estimator"]["reason"]


def test_a_script_importing_the_originals_pipeline_internals_is_told_what_to_remove(project):
    old_project(project, "logger.py", "from mlpipeline.utils import Versions, set_logger\nset_logger()\n")
    result = project.run()
    assert result.returncode == 1
    assert "set_logger was part of the original package's pipeline, not of its script API; remove the import" in result.output
    assert "logger.py" in result.output


# -- the pieces, in this process ---------------------------------------------------------


class Loader:
    def get_train_input(self, **kwargs):
        return []

    def get_train_sample_count(self):
        return 0


def test_both_versions_constructors():
    loader = Loader()
    readme = Versions(0.1, loader, 32, 2)
    post8 = Versions(loader, 32, 2, learning_rate=0.1, width=4)
    first, second = readme.addV("a"), post8.add_version("a", order=5)
    assert first["dataloader"] is second["dataloader"] is loader
    assert (first["batch_size"], first["epoc_count"], first["learning_rate"]) == (32, 2, 0.1)
    assert (second["batch_size"], second["epoc_count"], second["learning_rate"], second["width"]) == (32, 2, 0.1, 4)
    assert second["order"] == 5
    # post8's positional order: name, dataloader, batch_size, epoc_count, experiment_dir_suffix, order.
    assert post8.add_version("b", None, 8, 1, "suffix", 1)["model_dir_suffix"] == "suffix"
    with pytest.raises(TypeError, match=r"Versions\(dataloader, batch_size, epoc_count, \*\*defaults\): .*positional"):
        Versions(loader, 1, 2, 3)


def test_which_constructor_form_a_call_uses():
    loader = Loader()
    # Release post8's form with its dataloaders given per version: the second argument is a
    # number, which the README form's DataLoader never is.
    none_first = Versions(None, 32, 10)
    assert none_first.addV("a", dataloader=loader)["batch_size"] == 32
    assert Versions(None, loader, 8, 1).addV("b")["batch_size"] == 8  # README form, no learning rate
    keyword = Versions(loader, 4, 1, learning_rate=0.5, model_dir_suffix="shared", experiment_dir_suffix="x")
    version = keyword.add_version("c")
    # That release gave each version a folder of its own unless add_version named a suffix.
    assert version["model_dir_suffix"] is None and version.experiment_dir_suffix is None
    named = keyword.add_version("d", experiment_dir_suffix="mine")
    assert named["experiment_dir_suffix"] == named["model_dir_suffix"] == "mine"


def test_post8_versions_read_nested_parameters_as_attributes():
    versions = Versions(Loader(), 1, 1, optimizer={"name": "adam"})
    version = versions.add_version("v", schedule=[{"lr": 0.1}], custom_paramters={"net": {"width": 8}})
    assert (version.optimizer.name, version.schedule[0].lr, version.net.width) == ("adam", 0.1, 8)
    version.extra = {"depth": 2}
    assert version.extra.depth == 2
    assert json.loads(json.dumps(version.net)) == {"width": 8}


def test_addv_takes_the_1x_parameters_in_their_places():
    versions = Versions(0.1, Loader(), 1, 1, None, None, "default hooks")
    version = versions.addV("v", None, None, None, None, None, None, {"width": 3}, None, True, 4, 1)
    assert (version["hooks"], version["use_all_classes"], version["classes_count"], version["classes_offset"]) == (
        "default hooks", True, 4, 1)
    assert version["width"] == 3
    assert versions.addV("w", custom_parameters={"width": 5})["width"] == 5


def test_advice_for_the_originals_private_modules():
    from mlpipeline.child.old_scripts import old_code_advice

    try:
        import mlpipeline.utils._utils  # noqa: F401
    except ImportError as exc:
        assert old_code_advice(exc) == "the original's private modules are gone; import the same names from mlpipeline.utils"
    else:
        raise AssertionError("mlpipeline.utils._utils imported")


def test_metric_matches_the_originals_arithmetic():
    metric = Metric(track_average_epoc_count=2)
    assert metric.avg() == metric.avg_epoc() == metric.get_tracking_average() == 0
    metric.update(3.0)
    metric.update(5, count=3)  # the value is added as given, the count as given
    assert metric.avg() == pytest.approx(8 / 4)
    metric.reset()
    assert metric.avg() == 0 and metric.avg_epoc() == pytest.approx(2.0)
    metric.reset_epoc()
    assert metric.get_tracking_average() == pytest.approx(2.0)  # half the window is enough
    assert metric.get_tracking_delta() == 0 and metric.get_tracking_stdev() == 0
    metric.update(4)
    metric.reset_epoc()
    metric.reset_epoc()  # an epoch without updates counts 0
    assert metric.track_value_list == [4, 0]
    assert metric.get_tracking_delta() == -4
    with pytest.raises(TypeError, match="takes a number, not str"):
        metric.update("1")
    with pytest.raises(ValueError):
        Metric(track_average_epoc_count=0)


def test_metric_container_forms_and_guards():
    names = MetricContainer(["a", "b"], track_average_epoc_count=4)
    assert list(names) == ["a", "b"] and names.a is names["a"]
    assert names.b.track_average_epoc_count == 4
    groups = MetricContainer([{"metrics": ["x"]}, {"metrics": ["y"], "track_average_epoc_count": 7}], track_average_epoc_count=2)
    assert (groups.x.track_average_epoc_count, groups.y.track_average_epoc_count) == (2, 7)
    with pytest.raises(TypeError):
        groups.x = 1.0
    with pytest.raises(TypeError):
        groups["z"] = "not a metric"
    with pytest.raises(TypeError, match="a list"):
        MetricContainer("a")
    with pytest.raises(AttributeError, match="no metric named 'c'; the metrics are: 'a', 'b'"):
        names.c
    groups.x.update(2)
    assert json.loads(json.dumps(groups.as_record())) == {"x": 2.0, "y": 0}
    similar = MetricContainer(["loss", "l"])
    similar.loss.update(1)
    similar.l.update(1)
    similar.reset("loss")  # one name, not its letters
    assert (similar.loss.avg(), similar.l.avg()) == (0, 1)
    assert similar.log_metrics("l") == "l: 1.0000    "


def test_console_colors_and_mode_keys_have_every_original_name():
    for name in ("BLACK_FG", "MEGENTA_FG", "MAGENTA_FG", "BLACK_BG", "RED_BG", "GREEN_BG", "YELLOW_BG",
                 "BLUE_BG", "MEGENTA_BG", "CYAN_BG", "WHITE_BG", "RESET", "BOLD", "CYAN_FG", "WHITE_FG"):
        assert getattr(console_colors, name).startswith("\x1b[")
    assert console_colors.MEGENTA_BG == "\x1b[45m"
    assert (ExecutionModeKeys.TRAIN, ExecutionModeKeys.TEST, ModeKeys.PREDICT) == ("Train", "Test", "Predict")
