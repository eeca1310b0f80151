"""Outputs that cannot be written: refused at start, and no version runs on without its records."""
import contextlib
import os
import shutil
import time
import subprocess

import pytest
from conftest import versions_code


@pytest.mark.parametrize(
    "outputs_dir, why",
    [
        ("blocker/outputs", "a file stands where the folder should be, as on a disk that is not mounted"),
        ("/sys/mlpipeline-outputs", "a read-only file system, which even root cannot write"),
    ],
)
def test_unwritable_outputs_at_start_exit_2(project, outputs_dir, why):
    (project.root / "blocker").write_text("not a folder")
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\noutputs_dir = "{outputs_dir}"\n')
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 2, why
    assert "outputs folder cannot be written" in result.output and "nothing was run" in result.output
    assert "Traceback" not in result.output
    assert project.calls() == []


@contextlib.contextmanager
def on_a_full_disk(path, tmp_path):
    """``path`` (a file) on a small tmpfs that is full: every write to it fails with ENOSPC, as
    on a full disk (a bind mount of a file on it over ``path``; root only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small full tmpfs")
    disk = tmp_path / "full-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "none", str(disk)], check=True)
    try:
        (disk / path.name).write_bytes(b"")
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"x" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(filler)
        path.touch()
        subprocess.run(["mount", "--bind", str(disk / path.name), str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_during_a_run_stops_dispatching_and_nothing_is_lost(project, tmp_path):
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: project.calls("train"), what="v1 to start")
    results = project.outputs / "results.jsonl"
    with on_a_full_disk(results, tmp_path):  # every write to it now fails with ENOSPC
        (project.root / "go").touch()
        output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 2, output
    assert "results.jsonl: cannot be written (No space left on device); stopped dispatching" in output
    assert "Traceback" not in output
    assert [c["version"] for c in project.calls("train")] == ["v1"]  # v2 did not run without records

    # Space again.
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    assert [(r["version"], r["status"]) for r in project.results()] == [("v1", "finished"), ("v2", "finished")]
    assert [c["version"] for c in project.calls("train")] == ["v1", "v2"]  # v1's finish was kept
    assert project.output_text().count("a.py:v1    FINISHED") == 1


def test_an_outputs_folder_moved_away_during_a_run_is_not_made_anew_and_nothing_is_redone(project):
    # As `umount -l` of the disk it is on, or `mv` of the project: the path may even resolve again.
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: project.calls("train"), what="v1 to start")
    moved = project.root / "outputs-elsewhere"
    shutil.move(str(project.outputs), str(moved))
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 2, output
    assert "the outputs folder was removed, moved or replaced while this daemon ran" in output
    assert not project.outputs.exists()  # no records written where nobody would look
    assert [c["version"] for c in project.calls("train")] == ["v1"]
    shutil.move(str(moved), str(project.outputs))  # the disk is back
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    rows = [(row["version"], row["status"]) for row in project.results()]
    assert rows == [("v1", "finished"), ("v2", "finished")], rows  # v1 not recorded failed; nothing twice


def test_a_disk_that_disappears_during_a_run_stops_dispatching(project):
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="v1 to start")
    shutil.move(str(project.outputs), str(project.root / "outputs-elsewhere"))
    project.outputs.write_text("the disk is gone")
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 2, output
    assert "cannot be written" in output and "stopped dispatching" in output
    assert [c["version"] for c in project.calls("train")] == ["v1"]


BIG_CHECKPOINT = """
import os
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Big(Model):
    def train_model(self, input_fn, steps):
        with open(os.path.join(self.model_dir, "weights.bin"), "wb") as handle:
            handle.write(b"x" * (1 << 20))

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([1], [1]), batch_size=1, epoc_count=1)
versions.addV("v1", model_dir_suffix="v1")
versions.addV("v2", model_dir_suffix="v2")
MODEL = Big(versions)
"""


def run_on_a_small_model_ckpts_disk(project, name, script):
    """``mlpipeline -r -u`` of ``script`` alone, its model_dirs on a 256 KiB tmpfs (root only),
    unmounted after; returns (model_ckpts, the run)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    project.script(name, script, prelude=False)
    project.queue([name])
    checkpoints = project.outputs / "model_ckpts"
    checkpoints.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "none", str(checkpoints)], check=True)
    try:
        return checkpoints, project.run("-r", "-u")
    finally:
        subprocess.run(["umount", "-l", str(checkpoints)], check=False)


def test_a_version_that_meets_a_full_disk_is_resumed_later_not_failed_for_good(project):
    checkpoints, result = run_on_a_small_model_ckpts_disk(project, "big.py", BIG_CHECKPOINT)
    assert result.returncode == 2, result.output
    assert f"{checkpoints / 'big-v1'}: cannot be written (No space left on device); stopped dispatching" in result.output
    [row] = project.results()
    assert row["status"] == "interrupted" and row["reason"].startswith("stopped: the disk is full (big.py:v1 failed in train_model: OSError")
    assert row["reason"].endswith("resumable with -u once there is room")
    again = project.run("-r", "-u")  # room again: v1 is resumed, not skipped as failed
    assert again.returncode == 0, again.output
    assert [(r["version"], r["status"]) for r in project.results()][1:] == [("v1", "finished"), ("v2", "finished")]


TORCH_CHECKPOINT = """
import os
import torch
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Saves(Model):
    def train_model(self, input_fn, steps):
        torch.save({"weights": torch.zeros(1 << 18)}, os.path.join(self.model_dir, "model.pt"))  # 1 MiB

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([1], [1]), batch_size=1, epoc_count=1)
versions.addV("v1", model_dir_suffix="v1")
MODEL = Saves(versions)
"""


def test_a_checkpoint_writer_that_names_no_errno_on_a_full_disk_is_the_disks_doing_too(project):
    # torch.save raises RuntimeError("[enforce fail at inline_container.cc] ... unexpected pos"),
    # no OSError anywhere: the run record the child writes after it meets the full disk says why.
    checkpoints, result = run_on_a_small_model_ckpts_disk(project, "saves.py", TORCH_CHECKPOINT)
    assert result.returncode == 2, result.output
    assert f"{checkpoints / 'saves-v1'}: cannot be written (No space left on device)" in result.output
    [row] = project.results()
    assert row["status"] == "interrupted" and "RuntimeError: [enforce fail" in row["reason"], row["reason"]
    again = project.run("-r", "-u")  # room again: resumed, and it finishes
    assert again.returncode == 0, again.output
    assert [r["status"] for r in project.results()] == ["interrupted", "finished"]


def test_only_a_disk_the_queue_needs_makes_a_full_disk_the_machines_doing(tmp_path):
    from mlpipeline.child.worker import refused_for_space
    from mlpipeline.executors.base import ChildOutcome
    from mlpipeline.execution.outcome import classify
    from mlpipeline.records.states import JournalEvent

    full = OSError(28, "No space left on device", "/data/run/ckpt.pt")
    try:
        try:
            raise full
        except OSError:
            raise RuntimeError("checkpoint failed")  # raised while handling it: still the disk's doing
    except RuntimeError as exc:
        assert refused_for_space(exc) == "/data/run/ckpt.pt"
    assert refused_for_space(OSError(13, "Permission denied", "/x")) is None
    assert refused_for_space(OSError(28, "No space left on device")) == ""
    error = {"message": "a.py:v failed in train_model: OSError: [Errno 28] No space left on device", "no_space": "/data/run/ckpt.pt"}
    outcome = ChildOutcome(result={"ok": False, "error": error}, returncode=1, wall_s=1.0)
    event, result = classify(outcome, "a.py:v", 60.0, disk_full=True)
    assert event is JournalEvent.INTERRUPTED and result["error"]["message"].startswith("stopped: the disk is full (a.py:v failed")
    event, result = classify(outcome, "a.py:v", 60.0, disk_full=False)  # /tmp, a node's scratch: its own failure
    assert event is JournalEvent.FAILED and "no_space" not in result["error"]


def test_a_child_without_a_preload_imports_neither_ctypes_nor_hashlib(project):
    # Each costs every version 5 to 10 ms of CPU before its script runs (docs/performance.md).
    project.script(
        "a.py",
        "import json, os, sys\n"
        "from mlpipeline.helper import Model, SplitDataLoader\n"
        "from mlpipeline.utils import Versions\n"
        "class M(Model):\n"
        "    def train_model(self, input_fn, steps):\n"
        "        with open(os.path.join(self.model_dir, 'modules.json'), 'w') as handle:\n"
        "            json.dump({name: name in sys.modules for name in ('ctypes', 'hashlib')}, handle)\n"
        "    def evaluate_model(self, input_fn, steps): return {}\n"
        "versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([1], [1]), batch_size=1, epoc_count=1)\n"
        "versions.addV('v')\n"
        "MODEL = M(versions)\n",
        prelude=False,
    )
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    import json

    assert json.loads((project.outputs / "model_ckpts" / "a" / "modules.json").read_text()) == {"ctypes": False, "hashlib": False}


def test_a_heartbeat_that_cannot_be_written_stops_dispatching_and_says_so(project):
    # A daemon whose beat fails in silence is taken for dead by another host's daemon, which
    # then takes each version it runs over, again and again (22 trainings for 3 versions).
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    daemon = project.start("-r", env={"MLPIPELINE_HEARTBEAT_S": "0.2"})
    project.wait_for(lambda: project.calls("train"), what="v1 to start")
    [beat] = [path for path in (project.outputs / ".heartbeats").iterdir() if not path.name.startswith(".")]  # not a temporary file
    for _ in range(50):  # the beat may be written again between the unlink and the mkdir
        try:
            beat.unlink()
            beat.mkdir()
            break
        except (FileExistsError, FileNotFoundError):
            time.sleep(0.01)
    (beat / "in the way").touch()
    time.sleep(1.5)  # a few beats fail
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 2, output
    assert f"{beat}: cannot be written (" in output and "stopped dispatching" in output, output
    assert [(row["version"], row["status"]) for row in project.results()] == [("v1", "finished")]  # v2 waits for -u
    shutil.rmtree(beat)
    assert project.run("-r", "-u").returncode == 0
    assert [row["version"] for row in project.calls("train")] == ["v1", "v2"]


@pytest.mark.parametrize("blocker", ["a file", "a dangling link"])
def test_a_folder_of_model_dirs_that_is_no_folder_stops_dispatching_and_loses_no_version(project, blocker):
    # Every version failed in 0.00 s ("its model_dir cannot be made (Not a directory)"), and
    # -u then skipped them all for good: the queue's folder, not the versions, was at fault.
    project.script("a.py", versions_code('versions.addV("v1", model_dir_suffix="v1")', 'versions.addV("v2", model_dir_suffix="v2")'))
    project.queue(["a.py"])
    checkpoints = project.outputs / "model_ckpts"
    checkpoints.parent.mkdir(parents=True)
    if blocker == "a file":
        checkpoints.write_text("not a folder")
    else:
        checkpoints.symlink_to(project.root / "nowhere")
    result = project.run("-r", "-u")
    assert result.returncode == 2, result.output
    assert f"{checkpoints}: cannot hold the versions' model_dirs (" in result.output and "stopped dispatching" in result.output
    assert [(row["version"], row["status"]) for row in project.results()] == [("v1", "interrupted")]
    checkpoints.unlink()
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    assert sorted(row["version"] for row in project.results() if row["status"] == "finished") == ["v1", "v2"]


def test_one_versions_model_dir_that_is_a_file_fails_that_version_only(project):
    project.script("a.py", versions_code('versions.addV("v1", model_dir_suffix="v1")', 'versions.addV("v2", model_dir_suffix="v2")'))
    project.queue(["a.py"])
    (project.outputs / "model_ckpts").mkdir(parents=True)
    (project.outputs / "model_ckpts" / "a-v1").write_text("in the way")
    result = project.run("-r", "-u")
    assert result.returncode == 1, result.output
    assert [(row["version"], row["status"]) for row in project.results()] == [("v1", "failed"), ("v2", "finished")]


def test_a_file_in_the_way_of_one_scripts_subfolder_fails_its_versions_only(project):
    # The folder of model_dirs was taken as the model_dir's parent: a stray file at
    # model_ckpts/sub stopped the whole queue for one script's problem.
    project.script("sub/net.py", versions_code('versions.addV("v1")'))
    project.script("top.py", versions_code('versions.addV("v2")'))
    project.queue(["sub/net.py", "top.py"])
    (project.outputs / "model_ckpts").mkdir(parents=True)
    (project.outputs / "model_ckpts" / "sub").write_text("in the way")
    result = project.run("-r", "-u")
    assert result.returncode == 1, result.output
    assert [(row["version"], row["status"]) for row in project.results()] == [("v1", "failed"), ("v2", "finished")]
