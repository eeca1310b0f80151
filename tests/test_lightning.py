"""mlpipeline.lightning with real PyTorch Lightning: the sample project's Lightning classifier
trains, reports what its module logs, and a version cut off mid-epoch by a killed daemon
resumes from Lightning's last checkpoint with exactly the losses of an uninterrupted run."""
import json
import time
from pathlib import Path

import pytest
from conftest import processes_of_runs

pytest.importorskip("lightning")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-project" / "models" / "lightning_classifier.py"
# The example's classifier, one slow version: 94 steps of 0.03 s, a checkpoint every 10.
SLOW = EXAMPLE.read_text() + '''
versions = Versions(learning_rate=0.05, dataloader=LightningDataLoader(Blobs), batch_size=32, epoc_count=5)
versions.addV("slow", step_sleep=0.03, model_dir_suffix="slow")
MODEL = BlobLightning(versions, checkpoint_every=10)
'''


def history(project):
    path = project.outputs / "model_ckpts" / "lightning_classifier-slow" / ".mlpipeline" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def losses(reports):
    return {report["step"]: report["metrics"]["loss"] for report in reports}


def test_the_lightning_example_trains_reports_and_evaluates(project):
    project.script("lightning_classifier.py", EXAMPLE.read_text(), prelude=False)
    project.queue(["lightning_classifier.py"])
    project.queue(["lightning_classifier.py"], test=True)
    dry = project.run(timeout=180)
    assert dry.returncode == 0 and "Traceback" not in dry.output, dry.output
    result = project.run("-r", timeout=180)
    assert result.returncode == 0 and "Warning" not in result.output and "srun" not in result.output, result.output
    rows = {row["version"]: row for row in project.results()}
    assert set(rows) == {"lr_0.05", "lr_0.005"}
    for row in rows.values():
        assert row["status"] == "finished" and row["steps"]["trained"] == row["steps"]["total"] == 94  # ceil(5 * 600 / 32)
        assert row["eval_test"]["accuracy"] > 0.8 and row["metrics"]["loss"] < 0.5
    assert (project.outputs / "model_ckpts" / "lightning_classifier-lr_0.05" / "lightning" / "last.ckpt").is_file()


def test_a_lightning_version_cut_off_mid_epoch_resumes_with_the_losses_of_an_uninterrupted_run(project, tmp_path):
    from conftest import Project

    whole = Project(tmp_path / "uninterrupted")
    for each in (project, whole):
        each.script("lightning_classifier.py", SLOW, prelude=False)
        each.queue(["lightning_classifier.py"])
    assert whole.run("-r", timeout=180).returncode == 0
    expected = losses(history(whole))
    assert sorted(expected) == list(range(1, 95))

    daemon = project.start("-r", "-u")
    project.wait_for(lambda: len(history(project)) >= 35, timeout=120, what="35 reports")
    daemon.kill()
    daemon.communicate()
    deadline = time.monotonic() + 10
    while processes_of_runs(project.outputs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_of_runs(project.outputs), "the version trains on without its daemon"
    cut_at = max(losses(history(project)))
    assert 35 <= cut_at < 94
    # Where it resumes: the last checkpoint, which may be past the reports the history holds
    # (the daemon writes them out every second: a kill loses up to a second of them).
    import torch

    last = project.outputs / "model_ckpts" / "lightning_classifier-slow" / "lightning" / "last.ckpt"
    saved_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]

    again = project.run("-r", "-u", timeout=180)
    assert again.returncode == 0, again.output
    row = project.results()[-1]
    resumed_at = 94 - row["steps"]["trained"]
    assert row["status"] == "finished" and row["resumed"] and resumed_at == saved_at and resumed_at % 10 == 0 and resumed_at >= 30
    resumed = [report for report in history(project) if report["run_id"] == row["run_id"]]
    assert [report["step"] for report in resumed] == list(range(resumed_at + 1, 95))  # from step k + 1 on
    # The very losses: same weights, optimizer state (momentum), random states and batches.
    assert losses(resumed) == {step: expected[step] for step in range(resumed_at + 1, 95)}
    assert row["eval_test"] == whole.results()[-1]["eval_test"]


def test_a_lightning_version_asked_for_a_checkpoint_saves_one_at_the_next_step(project):
    import signal

    import torch

    script = SLOW.replace("checkpoint_every=10", "checkpoint_every=1000")  # none by the cadence
    project.script("lightning_classifier.py", script, prelude=False)
    project.queue(["lightning_classifier.py"])
    last = project.outputs / "model_ckpts" / "lightning_classifier-slow" / "lightning" / "last.ckpt"
    daemon = project.start("-r")
    try:
        project.wait_for(lambda: len(history(project)) >= 20, timeout=120, what="20 reports")
        assert not last.exists()
        for process in processes_of_runs(project.outputs):  # the keeper ignores it, the worker notes it
            process.send_signal(signal.SIGUSR1)  # as a Slurm job warned of its time limit passes it on
        project.wait_for(last.exists, timeout=10, what="a checkpoint")
        saved_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
        assert 20 <= saved_at < 94
    finally:
        assert daemon.wait(timeout=120) == 0
    assert project.results()[-1]["status"] == "finished"


def test_a_torn_lightning_checkpoint_fails_the_version_naming_the_file_and_keeps_it(project):
    # A model_dir that is not cleaned, so the fresh run takes up what it finds there.
    script = SLOW.replace("step_sleep=0.03", "step_sleep=0").replace("checkpoint_every=10", "checkpoint_every=10, allow_delete_model_dir=False")
    project.script("lightning_classifier.py", script, prelude=False)
    project.queue(["lightning_classifier.py"])
    last = project.outputs / "model_ckpts" / "lightning_classifier-slow" / "lightning" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 cut off by a full disk")
    result = project.run("-r", "-u", timeout=180)
    assert result.returncode == 1
    reason = project.results()[-1]["reason"]
    assert f"{last} is not a checkpoint Lightning can read" in reason and "move it away" in reason
    assert "mlpipeline/lightning.py" not in result.output  # the message, not our frames
    assert last.read_bytes() == b"PK\x03\x04 cut off by a full disk"
