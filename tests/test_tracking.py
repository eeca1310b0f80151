"""mlp.config's tracking: real MLflow (a sqlite store on disk) and real TensorBoard event files,
read back with the libraries' own readers. A daemon killed mid-version and the resume after
it make one tracker run."""
import os
import subprocess
from pathlib import Path

import pytest
from conftest import versions_code
from test_daemon_death import SLOW, kill_daemon_mid_version

STEPS = 'versions.addV("a", sleep_per_step=0.02, epoc_count=2)'  # 20 steps
SLOW_A = SLOW.replace('"slow"', '"a"')  # 200 steps of 0.05 s


def git_project(project):
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    subprocess.run(
        ["git", "-C", str(project.root), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
    )
    return subprocess.run(["git", "-C", str(project.root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_mlflow_gets_every_version_and_a_resumed_version_goes_on_in_its_run(project):
    mlflow_client = pytest.importorskip("mlflow.tracking")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "mlflow"\n')
    project.script("a.py", versions_code(SLOW_A, 'versions.addV("b", epoc_count=1, width=3)'))
    project.queue(["a.py"])
    commit = git_project(project)
    cut_at = kill_daemon_mid_version(project)
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output

    client = mlflow_client.MlflowClient(f"sqlite:///{project.outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("a.py")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["a", "b"]  # one MLflow run for a, cut off and resumed
    a, b = runs["a"], runs["b"]
    assert (a.info.status, b.info.status) == ("FINISHED", "FINISHED")
    assert a.data.tags["mlflow.source.git.commit"] == commit
    assert a.data.params["batch_size"] == "10" and b.data.params["width"] == "3"
    assert b.data.metrics["eval_test.accuracy"] == 0.5
    steps = [metric.step for metric in client.get_metric_history(a.info.run_id, "loss")]
    # The resumed part is all there; of the first, what reached MLflow before the kill.
    assert set(range(cut_at + 1, 201)) <= set(steps) and max(steps) == 200
    assert len([step for step in steps if step <= cut_at]) >= cut_at - 100
    assert [artifact.path for artifact in client.list_artifacts(a.info.run_id, "script")] == ["script/a.py"]
    ours = {row["run_id"] for row in project.results() if row["version"] == "a"}
    assert a.data.tags["mlpipeline.latest_run_id"] in ours


def test_tensorboard_event_files_per_version_and_the_resume_in_the_same_run(project):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "tensorboard"\n')
    project.script("a.py", versions_code(SLOW_A))
    project.queue(["a.py"])
    cut_at = kill_daemon_mid_version(project)
    assert project.run("-r", "-u").returncode == 0

    (run_dir,) = (project.outputs / "model_ckpts" / "a" / "tensorboard" / "a").iterdir()  # under the model_dir, one run
    events = accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    steps = [event.step for event in events.Scalars("loss")]
    assert set(range(cut_at + 1, 201)) <= set(steps) and len(list(run_dir.iterdir())) == 2  # two parts, one run
    assert events.Scalars("eval_test/accuracy")[0].value == 0.5
    texts = {tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    assert "| batch_size | 10 |" in texts["mlpipeline/parameters"]
    assert texts["mlpipeline/state"] == "finished" and "class Counting(Model)" in texts["mlpipeline/script"]


def test_tensorboard_in_a_folder_of_ones_choosing(project):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "tensorboard"\ntracking_dir = "runs"\n')
    project.script("sub/a.py", versions_code(STEPS, 'versions.addV("b", epoc_count=1)'))
    project.queue(["sub/a.py"])
    assert project.run("-r").returncode == 0
    assert project.run("-r", "--only", "sub/a.py:b").returncode == 0  # a fresh rerun: a run of its own
    assert len(list((project.root / "runs" / "sub" / "a" / "b").iterdir())) == 2
    for version, count in (("a", 20), ("b", 10)):
        run_dir = sorted((project.root / "runs" / "sub" / "a" / version).iterdir(), key=lambda path: path.stat().st_mtime)[0]
        events = accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        assert [event.step for event in events.Scalars("loss")] == list(range(1, count + 1))


def test_tracking_config_errors_name_the_line(project):
    project.script("a.py", versions_code(STEPS))
    project.queue(["a.py"])
    for config, message in (
        ('tracking = "wandb"', 'mlp.config:3: tracking must be "mlflow" or "tensorboard"'),
        ('tracking = "tensorboard"\ntracking_uri = "sqlite:///x.db"', "mlp.config:4: tracking_uri is MLflow's store"),
        ('tracking_dir = "runs"', "mlp.config:3: tracking_dir is the folder of TensorBoard's event files"),
    ):
        project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\n{config}\n')
        result = project.run("-r")
        assert result.returncode == 2 and message in result.output, result.output


def blocking(tmp_path, *packages):
    """A PYTHONPATH on which importing each of ``packages`` fails, as when it is not installed."""
    blocked = tmp_path / "blocked"
    for package in packages:
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text(f"raise ImportError('No module named {package}')\n")
    return {"PYTHONPATH": f"{blocked}{os.pathsep}{Path(__file__).resolve().parents[1]}"}


def test_a_missing_tracker_library_says_what_to_install_and_none_is_imported_unless_configured(project, tmp_path):
    project.script("a.py", versions_code(STEPS))
    project.queue(["a.py"])
    env = blocking(tmp_path, "mlflow", "tensorboard")
    assert project.run("-r", env=env).returncode == 0  # not configured: never imported
    for tracker in ("mlflow", "tensorboard"):
        project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\ntracking = "{tracker}"\n')
        result = project.run("-r", env=env)
        assert result.returncode == 2
        assert f"mlp.config:3: tracking = \"{tracker}\" needs {tracker}" in result.output
        assert f"pip install 'mlpipeline[{tracker}]'" in result.output


ENVIRONMENT = '''
import json, os
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

NAMES = ("MLPIPELINE_RUN_ID", "MLPIPELINE_SCRIPT", "MLPIPELINE_VERSION", "MLPIPELINE_MODEL_DIR", "CUDA_DEVICE_ORDER")


class Named(Model):
    def train_model(self, data, steps):
        with open(os.path.join(os.getcwd(), "names.jsonl"), "a") as handle:
            handle.write(json.dumps({name: os.environ.get(name) for name in NAMES}) + "\\n")

    def evaluate_model(self, data, steps):
        return {}


versions = Versions(0.1, SplitDataLoader([1], [1]), 1, 1)
versions.addV("v")
MODEL = Named(versions)
'''


def test_every_versions_process_can_name_its_run_in_both_modes(project):
    import json

    project.script("sub/named.py", ENVIRONMENT, prelude=False)
    project.queue(["sub/named.py"])
    project.queue(["sub/named.py"], test=True)
    assert project.run().returncode == 0
    assert project.run("-r").returncode == 0
    assert project.run("-r", env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}).returncode == 0  # a user's own, kept
    dry, real, own = [json.loads(line) for line in (project.root / "names.jsonl").read_text().splitlines()]
    assert own["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    row = project.results()[0]
    assert real == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # GPU ids as nvidia-smi numbers them
        "MLPIPELINE_RUN_ID": row["run_id"],
        "MLPIPELINE_SCRIPT": "sub/named.py",
        "MLPIPELINE_VERSION": "v",
        "MLPIPELINE_MODEL_DIR": row["model_dir"],
    }
    assert dry["MLPIPELINE_SCRIPT"] == "sub/named.py" and dry["MLPIPELINE_VERSION"] == "v"
    assert len(dry["MLPIPELINE_RUN_ID"]) == 12 and dry["MLPIPELINE_RUN_ID"] != row["run_id"]
    assert dry["MLPIPELINE_MODEL_DIR"] != row["model_dir"]  # test mode's temporary folder


ODD_NAMES = '''
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Odd(Model):
    def train_model(self, data, steps):
        self.report(step=1, **{"a//b": 1.0, "x:y": 2.0, "x_y": 3.0, "huge": 10 ** 400, "nan": float("nan")})

    def evaluate_model(self, data, steps):
        return {"ok": 1}


versions = Versions(0.1, SplitDataLoader([1], [1]), 1, 1)
versions.addV("odd", custom_parameters={"lr:x": 1, "lr_x": 2})
MODEL = Odd(versions)
'''


def test_mlflow_takes_odd_names_apart_and_always_ends_the_run(project):
    mlflow_client = pytest.importorskip("mlflow.tracking")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "mlflow"\ntracking_uri = "sqlite:///store/mlflow.db"\n')
    (project.root / "store").mkdir()
    project.script("odd.py", ODD_NAMES, prelude=False)
    project.queue(["odd.py"])
    result = project.run("-r")
    assert result.returncode == 0 and "tracking failed" not in result.output, result.output
    client = mlflow_client.MlflowClient(f"sqlite:///{project.root / 'store' / 'mlflow.db'}")  # relative to the project
    (run,) = client.search_runs([client.get_experiment_by_name("odd.py").experiment_id])
    assert run.info.status == "FINISHED"
    assert {"a/b", "x_y", "x_y_2", "eval_test.ok"} <= set(run.data.metrics)  # none lost to another's name
    assert {run.data.params[key] for key in ("lr_x", "lr_x_2")} == {"1", "2"}
    # The artifacts of a database store beside the project go under outputs/, not the current folder.
    assert run.info.artifact_uri.startswith((project.outputs / "mlflow-artifacts").as_uri())


def test_an_mlflow_server_that_does_not_answer_stops_the_daemon_at_start(project):
    pytest.importorskip("mlflow.tracking")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "mlflow"\ntracking_uri = "http://127.0.0.1:1"\n')
    project.script("a.py", versions_code(STEPS))
    project.queue(["a.py"])
    result = project.run("-r", timeout=180)
    assert result.returncode == 2 and "mlp.config:4: tracking = \"mlflow\": http://127.0.0.1:1 cannot be used" in result.output
    assert project.calls("train") == []
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "tensorboard"\ntracking_dir = "taken"\n')
    project.write("taken", "a file where the folder should be")
    result = project.run("-r")
    assert result.returncode == 2 and "mlp.config:4: tracking = \"tensorboard\"" in result.output
