"""The bundled sample project and the repository root's configs do real work."""
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, Project


@pytest.mark.slow
def test_sample_project_in_both_modes(tmp_path):
    root = tmp_path / "sample project"
    shutil.copytree(REPO / "examples" / "sample-project", root, ignore=shutil.ignore_patterns("outputs", "__pycache__"))
    project = Project.__new__(Project)
    project.root, project.models = root, root / "models"
    project.outputs = project.models / "outputs"

    dry = project.run(timeout=180)
    assert dry.returncode == 0, dry.output
    assert "all 8 versions passed" in dry.output
    assert not project.outputs.exists()

    real = project.run("-r", "-u", timeout=300)
    assert real.returncode == 0, real.output
    results = {f"{r['script']}:{r['version']}": r for r in project.results()}
    assert set(results) == {
        "sample_model.py:lr_0.1",
        "sample_model.py:lr_0.01",
        "sample_model.py:small_batch",
        "sample_model.py:large_batch",
        "torch_classifier.py:lr_0.05",
        "torch_classifier.py:lr_0.005",
        "keras_classifier.py:lr_0.01",
        "keras_classifier.py:lr_0.001",
    }
    assert all(r["status"] == "finished" for r in results.values())
    line = results["sample_model.py:lr_0.1"]["eval_test"]
    assert line["mse"] < 0.05 and abs(line["w"] - 3) < 0.1  # it learned y = 3x - 2
    assert (project.outputs / "model_ckpts" / "sample_model-small_batch" / "line.json").exists()
    for classifier in ("torch_classifier.py:lr_0.05", "keras_classifier.py:lr_0.01"):
        assert results[classifier]["eval_test"]["accuracy"] > 0.8  # three blobs, well apart
    assert (project.outputs / "model_ckpts" / "torch_classifier-lr_0.05" / "mlpipeline-checkpoint.pt").exists()
    assert (project.outputs / "model_ckpts" / "keras_classifier-lr_0.01" / "checkpoint").exists()
    log = "".join(path.read_text() for path in project.outputs.glob("log-*"))
    assert "cpu_feature_guard" not in log and "absl::InitializeLog" not in log and "node_def_util" not in log
    assert "oneDNN" not in log  # an INFO line TensorFlow prints before it reads TF_CPP_MIN_LOG_LEVEL

    again = project.run("-r", "-u", timeout=120)
    assert again.returncode == 0
    assert len(project.results()) == 8  # finished work is skipped


@pytest.mark.slow
def test_repository_root_runs_the_sample_in_test_mode():
    result = subprocess.run(
        [sys.executable, "-m", "mlpipeline"], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sample_model.py:lr_0.1" in result.stdout


def test_version_flag():
    result = subprocess.run([sys.executable, "-m", "mlpipeline", "--version"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    assert result.stdout.startswith("mlpipeline ")


def test_child_output_reaches_the_log_while_the_version_runs(project):
    project.script(
        "a.py",
        "versions = Versions(0.1, Data(), 10, 1)\n"
        'versions.addV("v1", print_lines=1, wait_for="go")\n'
        "MODEL = Counting(versions)\n",
    )
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: " OUT a.py:v1 hello from v1" in project.log_text(), what="the line in the log")
    assert project.journal()[-1]["event"] == "started"  # still running: the log is live
    (project.root / "go").touch()
    daemon.communicate(timeout=60)
    assert daemon.returncode == 0


def test_the_readme_script_runs_as_written(project):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = readme[readme.index("    # models/line.py\n"):].splitlines()
    block = []
    for line in lines:  # the indented code block, up to the first line of prose
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    code = "\n".join(block)
    project.script("line.py", code, prelude=False)
    project.queue(["line.py"], test=True)
    project.queue(["line.py"])
    dry = project.run()
    assert dry.returncode == 0, dry.output
    real = project.run("-r")
    assert real.returncode == 0, real.output
    results = {r["version"]: r for r in project.results()}
    assert results["fast"]["eval_test"]["mse"] < results["slow"]["eval_test"]["mse"]
    assert results["fast"]["steps"]["trained"] == 2000  # ceil(20 epochs * 100 samples / batch 1)
