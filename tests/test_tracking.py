"""mlp.config's tracking: real MLflow (a sqlite store on disk), real TensorBoard event files and
real W&B offline runs, read back with the libraries' own readers (W&B's, its record protos). A
daemon killed mid-version and the resume after it make one tracker run."""
import json
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
        ('tracking = "neptune"', 'mlp.config:3: tracking must be "mlflow" or "tensorboard" or "wandb"'),
        ('tracking = "mlfow"', 'mlp.config:3: tracking must be "mlflow" or "tensorboard" or "wandb", not \'mlfow\'; did you mean "mlflow"?'),
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
    env = blocking(tmp_path, "mlflow", "tensorboard", "wandb")
    assert project.run("-r", env=env).returncode == 0  # not configured: never imported
    for tracker in ("mlflow", "tensorboard", "wandb"):
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


def wandb_records(path):
    """The records of a W&B run file (run-<id>.wandb): LevelDB's log format of 32 KiB blocks
    after a 7-byte header, each record a protobuf ``Record``; read as `wandb sync` reads it."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        piece, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind in (1, 4):  # full, or last of a record in pieces
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + piece)
            pending = b""
            yield record
        else:  # first or middle
            pending += piece


def wandb_run(folder):
    """What the W&B run file in ``folder`` holds: its run record, steps, summary and exit."""
    found = {"history": {}, "summary": {}, "exit": None, "tags": ()}
    for record in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["run"], found["tags"] = record.run, tuple(record.run.tags)
            found["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "config":
            found["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            found["history"][values["_step"]] = values
        elif kind == "summary":
            found["summary"].update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "exit":
            found["exit"] = record.exit.exit_code
    return found


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B as its users run it without a network: WANDB_MODE=offline, its own folders in tmp."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


def test_wandb_gets_a_run_per_version_and_a_resumed_version_goes_on_in_its_run(project, wandb_offline):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "wandb"\n')
    project.script("a.py", versions_code(SLOW_A, 'versions.addV("b", epoc_count=1, width=3)', 'versions.addV("bad", fail_in="pre")'))
    project.queue(["a.py"])
    cut_at = kill_daemon_mid_version(project)
    again = project.run("-r", "-u")
    assert again.returncode == 1 and "tracking failed" not in again.output and "wandb:" not in again.output, again.output

    runs = {}
    for folder in sorted((project.outputs / "wandb").glob("offline-run-*")):
        runs.setdefault(folder.name.rsplit("-", 1)[1], []).append(wandb_run(folder))
    by_name = {parts[0]["run"].display_name: parts for parts in runs.values()}
    assert sorted(by_name) == ["a.py:a", "a.py:b", "a.py:bad"]  # one W&B run a version; a's in two parts
    first, resumed = by_name["a.py:a"]
    assert first["run"].run_id == resumed["run"].run_id and resumed["run"].run_group == "a.py"
    assert first["run"].project == project.root.name
    assert resumed["config"]["batch_size"] == 10 and by_name["a.py:b"][0]["config"]["width"] == 3
    # Its own parameters, not those b left in the model_dir they share (bad failed before writing its own).
    assert "width" not in by_name["a.py:bad"][0]["config"] and by_name["a.py:bad"][0]["config"]["fail_in"] == "pre"
    assert resumed["config"]["mlpipeline"]["version"] == "a"
    # Every report of the resumed part; of the first, what reached W&B before the kill.
    assert set(range(cut_at + 1, 201)) <= set(resumed["history"]) and max(resumed["history"]) == 200
    assert len([step for step in first["history"] if step <= cut_at]) >= cut_at - 100
    assert resumed["summary"]["eval_test/accuracy"] == 0.5 and resumed["summary"]["mlpipeline/state"] == "finished"
    assert resumed["exit"] == 0 and "finished" in resumed["tags"]
    (bad,) = by_name["a.py:bad"]
    assert bad["exit"] == 1 and "failed" in bad["tags"] and "deliberate failure in pre" in bad["summary"]["mlpipeline/reason"]
    saved = next(folder for folder in (project.outputs / "wandb").glob(f"offline-run-*-{resumed['run'].run_id}") if (folder / "files" / "a.py").exists())
    assert "class Counting(Model)" in (saved / "files" / "a.py").read_text()
    kept = json.loads((project.outputs / "model_ckpts" / "a" / ".mlpipeline" / "tracking.json").read_text())
    assert kept["a"] == {"tracker": "wandb", "project": project.root.name, "run_id": resumed["run"].run_id}


def test_wandb_without_an_api_key_online_stops_the_daemon_at_start(project, wandb_offline, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\ntracking = "wandb"\n')
    project.script("a.py", versions_code(STEPS))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 2, result.output
    assert 'mlp.config:3: tracking = "wandb": W&B has no API key' in result.output and "WANDB_MODE=offline" in result.output
    assert project.calls("train") == []


def test_early_stopping_ends_every_mlflow_run_even_those_stopped_while_paused(project):
    # A version paused at a rung and then judged out runs nowhere; its MLflow run, which the
    # pause left SCHEDULED, ends FINISHED with the stop's state and reason.
    mlflow_client = pytest.importorskip("mlflow.tracking")
    from test_early_stopping import halving_project

    halving_project(project, extra='tracking = "mlflow"')
    result = project.run("-r", timeout=180)
    assert result.returncode == 0, result.output
    client = mlflow_client.MlflowClient(f"sqlite:///{project.outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("curves.py")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [f"v{i}" for i in range(9)]  # one MLflow run a version, its pauses and stop in it
    assert {name: run.info.status for name, run in runs.items()} == {name: "FINISHED" for name in runs}
    assert runs["v8"].data.tags["mlpipeline.state"] == "finished"
    stopped = [name for name, run in runs.items() if run.data.tags["mlpipeline.state"] == "stopped"]
    assert sorted(stopped) == [f"v{i}" for i in range(8)]
    assert "ranks" in runs["v3"].data.tags["mlpipeline.reason"] and runs["v3"].data.params["floor"] == "0.2"
