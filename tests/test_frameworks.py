"""SPEC 9: PyTorch and Keras bases that checkpoint, resume exactly and seed from the version.

These train tiny real models with real torch and real TensorFlow.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, Project, kill_tree

pytestmark = pytest.mark.slow

TORCH_SCRIPT = '''
import json, os, time
import torch
from torch import nn
from mlpipeline.pytorch import TorchDataLoader, TorchModel
from mlpipeline.utils import Versions

def data(count, seed):
    generator = torch.Generator().manual_seed(seed)
    points = torch.randn(count, 4, generator=generator)
    return torch.utils.data.TensorDataset(points, (points.sum(dim=1) > 0).long())

class Net(TorchModel):
    def build(self, version):
        self.net = nn.Sequential(nn.Linear(4, version.get("width", 16)), nn.ReLU(), nn.Dropout(0.2), nn.Linear(version.get("width", 16), 2))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=version["learning_rate"])
        self.schedule = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=10, gamma=0.9)

    def train_model(self, input_fn, steps):
        with open("calls.jsonl", "a") as log:
            log.write(json.dumps({"hook": "train", "model_dir": self.model_dir, "steps": steps, "from": self.step,
                                  "restored": bool(self.restored_from), "pid": os.getpid()}) + "\\n")
        for step, (points, labels) in self.batches(input_fn, steps):
            self.optimizer.zero_grad()
            loss = nn.functional.cross_entropy(self.net(points), labels)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            with open("calls.jsonl", "a") as log:
                log.write(json.dumps({"hook": "step", "step": step, "batch": labels.tolist()}) + "\\n")
            time.sleep(self.current_version.get("sleep", 0))

    def evaluate_model(self, input_fn, steps):
        self.net.eval()
        with torch.no_grad():
            correct = sum((self.net(x).argmax(1) == y).sum().item() for x, y in self.eval_batches(input_fn, limit=steps))
        self.net.train()
        return {"accuracy": correct / steps}

versions = Versions(learning_rate=0.01, dataloader=TorchDataLoader(data(200, 1), data(50, 2)), batch_size=16, epoc_count=3)
versions.addV("v1", seed=7, sleep=0.05)
MODEL = Net(versions, checkpoint_every=CHECKPOINT_EVERY)
'''

KERAS_SCRIPT = '''
import json, os, time
import keras
import numpy as np
from mlpipeline.tensorflow import KerasDataLoader, KerasModel
from mlpipeline.utils import Versions

def data(count, seed):
    points = np.random.default_rng(seed).standard_normal((count, 4)).astype("float32")
    return points, (points.sum(axis=1) > 0).astype("int64")

class Net(KerasModel):
    def build(self, version):
        self.model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(version.get("width", 16), activation="relu"),
                                       keras.layers.Dropout(0.2), keras.layers.Dense(2)])
        self.model.compile(optimizer=keras.optimizers.Adam(version["learning_rate"]),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    def train_model(self, input_fn, steps):
        with open("calls.jsonl", "a") as log:
            log.write(json.dumps({"hook": "train", "model_dir": self.model_dir, "steps": steps, "from": self.step,
                                  "restored": bool(self.restored_from), "pid": os.getpid()}) + "\\n")
        for step, (points, labels) in self.batches(input_fn, steps):
            self.model.train_on_batch(points, labels)
            with open("calls.jsonl", "a") as log:
                log.write(json.dumps({"hook": "step", "step": step, "batch": labels.tolist()}) + "\\n")
            time.sleep(self.current_version.get("sleep", 0))

    def evaluate_model(self, input_fn, steps):
        points, labels = input_fn
        return {"accuracy": float(self.model.evaluate(points[:steps], labels[:steps], verbose=0, return_dict=True)["accuracy"])}

versions = Versions(learning_rate=0.01, dataloader=KerasDataLoader(data(200, 1), data(50, 2)), batch_size=16, epoc_count=3)
versions.addV("v1", seed=7, sleep=0.05)
MODEL = Net(versions, checkpoint_every=CHECKPOINT_EVERY)
'''

FRAMEWORKS = {"torch": TORCH_SCRIPT, "keras": KERAS_SCRIPT}
TOTAL_STEPS = 38  # ceil(3 epochs * 200 samples / batch 16)


def weights(project, framework):
    """The final weights in the version's model_dir, read back with the framework itself."""
    model_dir = project.outputs / "model_ckpts" / "net"
    if framework == "torch":
        code = (
            "import sys, torch, json; state = torch.load(sys.argv[1] + '/mlpipeline-checkpoint.pt', weights_only=False);"
            "print(json.dumps({'step': state['step'], 'w': {k: v.flatten().tolist() for k, v in state['objects']['net'].items()}}))"
        )
    else:
        code = (
            "import sys, json, tensorflow as tf; path = tf.train.latest_checkpoint(sys.argv[1]); r = tf.train.load_checkpoint(path);"
            "names = [n for n in r.get_variable_to_shape_map() if n.startswith('model/') and 'OPTIMIZER' not in n];"
            "print(json.dumps({'step': int(r.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE')),"
            " 'w': {n: r.get_tensor(n).flatten().tolist() for n in names if 'VARIABLE_VALUE' in n}}))"
        )
    out = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def make(project, framework, checkpoint_every=5):
    project.script("net.py", FRAMEWORKS[framework].replace("CHECKPOINT_EVERY", str(checkpoint_every)), prelude=False)
    project.queue(["net.py"])
    project.queue(["net.py"], test=True)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_test_mode_trains_one_step_in_a_temporary_dir(project, framework):
    make(project, framework)
    result = project.run(timeout=120)
    assert result.returncode == 0, result.output
    train = project.calls("train")[0]
    assert train["steps"] == 1 and not train["restored"]
    assert [c["step"] for c in project.calls("step")] == [1]
    assert str(project.root) not in train["model_dir"]
    assert not (project.root / "models" / "outputs").exists()
    assert not os.path.exists(train["model_dir"])  # nothing left behind


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_sigkill_and_resume_end_with_the_weights_of_an_uninterrupted_run(project, tmp_path, framework):
    make(project, framework)
    uninterrupted = Project(tmp_path / "uninterrupted run")
    make(uninterrupted, framework)
    assert uninterrupted.run("-r", "-u", timeout=180).returncode == 0
    reference = weights(uninterrupted, framework)
    reference_batches = [c["batch"] for c in uninterrupted.calls("step")]
    assert reference["step"] == TOTAL_STEPS and len(reference_batches) == TOTAL_STEPS

    daemon = project.start("-r", "-u")
    project.wait_for(lambda: len(project.calls("step")) >= 17, timeout=120, what="17 steps")
    kill_tree(daemon.pid)
    daemon.communicate()
    result = project.run("-r", "-u", timeout=180)
    assert result.returncode == 0, result.output

    first, resumed = project.calls("train")
    assert resumed["restored"] and resumed["from"] % 5 == 0 and resumed["from"] >= 15
    assert resumed["steps"] == TOTAL_STEPS - resumed["from"]  # exactly the remaining steps
    steps = project.calls("step")
    after = [c for c in steps if c["step"] > resumed["from"]][-resumed["steps"]:]
    assert [c["step"] for c in after] == list(range(resumed["from"] + 1, TOTAL_STEPS + 1))
    assert [c["batch"] for c in after] == reference_batches[resumed["from"]:]  # the same data order
    final = weights(project, framework)
    assert final["step"] == TOTAL_STEPS
    assert final["w"].keys() == reference["w"].keys()
    for name, values in reference["w"].items():
        assert final["w"][name] == pytest.approx(values, rel=1e-6, abs=1e-7), name
    if framework == "torch":
        assert final["w"] == reference["w"]  # equal on the CPU, bit for bit
    record = project.results()[-1]
    assert record["steps"] == {"trained": resumed["steps"], "total": TOTAL_STEPS, "already_trained": resumed["from"]}


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_loop_left_early_keeps_its_last_steps_and_records_the_steps_it_trained(project, framework):
    # A loop with a break (the script's own early stopping) was recorded "38 of 38" steps, and
    # the steps after its last checkpoint were lost with the process.
    script = FRAMEWORKS[framework].replace("CHECKPOINT_EVERY", "10").replace('versions.addV("v1", seed=7, sleep=0.05)', 'versions.addV("v1", seed=7)')
    leave = '            time.sleep(self.current_version.get("sleep", 0))\n'
    assert leave in script
    project.script("net.py", script.replace(leave, leave + "            if step == 25:\n                break\n"), prelude=False)
    project.queue(["net.py"])
    result = project.run("-r", timeout=180)
    assert result.returncode == 0, result.output
    [row] = project.results()
    assert row["status"] == "finished" and row["steps"] == {"trained": 25, "total": 38, "already_trained": None}, row["steps"]
    assert weights(project, framework)["step"] == 25  # saved when train_model returned


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_model_without_build_is_named_with_its_line_not_our_frames(project, framework):
    script = FRAMEWORKS[framework].replace("CHECKPOINT_EVERY", "10").replace("    def build(self, version):", "    def built(self, version):")
    project.script("net.py", script, prelude=False)
    project.queue(["net.py"], test=True)
    result = project.run(timeout=120)
    assert result.returncode == 1
    line = next(number for number, text in enumerate(script.splitlines(), 1) if text.startswith("class Net("))
    said = f"net.py:v1: net.py:{line}: Net has no build(version): define it to create the version's model"
    assert said in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_an_edited_script_trains_again_from_a_clean_model_dir(project, framework):
    make(project, framework)
    assert project.run("-r", "-u", timeout=180).returncode == 0
    script = project.models / "net.py"
    script.write_text(script.read_text().replace('versions.addV("v1", seed=7, sleep=0.05)', 'versions.addV("v1", seed=7)'))
    assert project.run("-r", "-u", timeout=180).returncode == 0
    first, second = project.calls("train")
    assert not second["restored"] and second["from"] == 0 and second["steps"] == TOTAL_STEPS
    assert weights(project, framework)["step"] == TOTAL_STEPS
    # The model carries the code that trained it, and the framework versions it ran on.
    records = project.outputs / "model_ckpts" / "net" / ".mlpipeline"
    assert (records / "net.py").read_bytes() == script.read_bytes()
    run = json.loads((records / "run.json").read_text())
    assert run["run_id"] == project.results()[-1]["run_id"] and run["state"] == "finished"
    used = ["torch"] if framework == "torch" else ["tensorflow", "keras"]
    for name in used:
        assert run["software"][name].split(".")[0].isdigit(), run["software"]
    assert not ({"torch", "tensorflow"} - set(used)) & set(run["software"])  # only what the script imported


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_kill_during_checkpoint_saves_never_spoils_the_latest(project, framework):
    # A wide model saved after every step: kills land in the middle of saves too.
    make(project, framework, checkpoint_every=1)
    script = project.models / "net.py"
    script.write_text(script.read_text().replace('addV("v1", seed=7, sleep=0.05)', 'addV("v1", seed=7, width=3000)'))
    for attempt in range(4):
        daemon = project.start("-r", "-u")
        project.wait_for(lambda: len(project.calls("step")) >= 3 * (attempt + 1), timeout=120, what="more steps")
        kill_tree(daemon.pid)
        daemon.communicate()
        assert weights(project, framework)["step"] >= 1  # the latest checkpoint reads back whole
    result = project.run("-r", "-u", timeout=300)
    assert result.returncode == 0, result.output
    assert weights(project, framework)["step"] == TOTAL_STEPS
    model_dir = project.outputs / "model_ckpts" / "net"
    leftovers = [p.name for p in model_dir.iterdir() if ".tmp" in p.name or "_temp" in p.name or p.name.startswith(".")]
    assert leftovers == [".mlpipeline"]  # the run record, and nothing half-written
    assert sorted(p.name for p in (model_dir / ".mlpipeline").iterdir()) == ["net.py", "parameters.json", "run.json"]


@pytest.mark.parametrize("module, extra", [("torch", "torch"), ("tensorflow", "tensorflow")])
def test_a_missing_framework_is_one_line_naming_the_extra(project, module, extra):
    base = "pytorch" if module == "torch" else "tensorflow"
    project.script("net.py", f"import sys\nsys.modules[{module!r}] = None  # as if it were not installed\nimport mlpipeline.{base}\n", prelude=False)
    project.queue(["net.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert f"net.py: mlpipeline.{base} needs {module}, which is not installed: pip install 'mlpipeline[{extra}]'" in result.output
    assert "Traceback" not in result.output


def test_importing_mlpipeline_imports_no_framework():
    code = (
        "import sys, mlpipeline, mlpipeline.helper, mlpipeline.utils, mlpipeline.cli, mlpipeline.execution.loop, mlpipeline.child.worker, mlpipeline.watch.status;"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'ray') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["models/blobs_torch.py", "models/blobs_keras.py"])
def test_the_scripts_in_docs_frameworks_run_as_written(project, name):
    doc = (REPO / "docs" / "frameworks.md").read_text(encoding="utf-8")
    block = []
    for line in doc[doc.index(f"    # {name}\n"):].splitlines():
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    project.script("blobs.py", "\n".join(block), prelude=False)
    project.queue(["blobs.py"], test=True)
    result = project.run(timeout=180)
    assert result.returncode == 0, result.output
    assert "all 2 versions passed" in result.output


def test_a_tf_data_input_resumes_into_the_same_batch_order(tmp_path):
    code = r'''
import json, sys
import numpy as np
import tensorflow as tf
import keras
from mlpipeline.tensorflow import KerasDataLoader, KerasModel
from mlpipeline.utils import Versions

dataset = tf.data.Dataset.from_tensor_slices((np.arange(10, dtype="float32").reshape(10, 1), np.arange(10)))

class Net(KerasModel):
    def build(self, version):
        self.model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        self.model.compile(optimizer="sgd", loss="mse")

def labels(model_dir, steps):
    model = Net(Versions(0.1, KerasDataLoader(dataset, dataset), 4, 3), checkpoint_every=1)
    version = model.versions.addV("v", seed=5)
    model.pre_execution_hook(version, model_dir, "train")
    return model.step, [(step, batch[1].numpy().tolist()) for step, batch in model.batches(dataset, steps)]

assert KerasDataLoader(dataset, dataset).get_train_sample_count() == 10
start, whole = labels(sys.argv[1], 8)      # ceil(3 epochs * 10 / 4) = 8 steps, uninterrupted
assert start == 0
start, first = labels(sys.argv[2], 3)      # a run cut off after 3 steps...
start, rest = labels(sys.argv[2], 5)       # ...and resumed from its checkpoint
print(json.dumps({"whole": whole, "first": first, "rest": rest, "resumed_at": start}))
'''
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["resumed_at"] == 3
    assert data["first"] + data["rest"] == data["whole"]  # the same batches, in the same order
    seen = [label for _, batch in data["whole"] for label in batch]
    assert sorted(seen[:10]) == list(range(10))  # each epoch is every sample once, shuffled
    assert seen[:10] != list(range(10))
