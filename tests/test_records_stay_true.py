"""SPEC 7: the records stay true: a journal deleted or replaced under a running daemon keeps
what it knew, every line is strict JSON, and an atomic write is durable (its folder synced)."""
import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import Project, versions_code


def strict(path):
    """Every line of ``path`` parsed as strict JSON: NaN and Infinity are not JSON."""

    def refuse(token):
        raise AssertionError(f"{path.name}: {token} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["deleted", "replaced by an older copy"])
def test_a_journal_lost_while_the_daemon_runs_keeps_what_the_daemon_knew(project, how):
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go-1")', 'versions.addV("v2", wait_for="go-2")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    journal = project.outputs / "history.jsonl"
    project.wait_for(lambda: project.calls("train"), what="v1 to start")
    older = project.root / "history-older.jsonl"
    shutil.copy(journal, older)  # a backup taken while v1 ran
    (project.root / "go-1").touch()
    project.wait_for(lambda: len(project.calls("train")) == 2, what="v2 to start")
    if how == "deleted":
        journal.unlink()
    else:
        os.replace(older, journal)  # a restored backup, or a sync tool's older copy
    (project.root / "go-2").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert f"history.jsonl: the journal was {how.split()[0]} while this daemon ran" in output
    finished = [e["version"] for e in strict(journal) if e["event"] == "finished"]
    assert finished == ["v1", "v2"]

    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    assert len(project.calls("train")) == 2  # nothing finished ran again from step 0
    assert "2 skipped by -u" in again.output


NAN_SCRIPT = '''
class Strange(Counting):
    def train_model(self, input_fn, steps):
        super().train_model(input_fn, steps)
        self.report(step=steps, total=steps, loss=float("nan"), grad=float("-inf"))
        # A child writing its own event, as any code in it can: raw NaN and Infinity tokens.
        os.write(int(os.environ["MLPIPELINE_EVENTS_FD"]), b'{"type": "report", "step": 1, "metrics": {"acc": NaN, "big": Infinity}}\\n')

    def evaluate_model(self, input_fn, steps):
        return {"score": float("inf"), "nested": [float("nan"), 1.5]}

versions = Versions(learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=float("1.0"))
versions.addV("v1")
MODEL = Strange(versions, allow_delete_model_dir=True)
'''


def test_nan_and_infinity_from_a_child_are_written_as_strict_json(project):
    project.script("a.py", NAN_SCRIPT)
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    (record,) = strict(project.outputs / "results.jsonl")
    assert record["metrics"] == {"loss": "nan", "grad": "-inf", "acc": "nan", "big": "inf"}
    assert record["eval_test"] == {"score": "inf", "nested": ["nan", 1.5]}
    events = strict(project.outputs / "history.jsonl")
    assert events[-1]["event"] == "finished" and events[-1]["metrics"]["big"] == "inf"
    run = json.loads((project.outputs / "model_ckpts" / "a" / ".mlpipeline" / "run.json").read_text(), parse_constant=float)
    assert run["state"] == "finished"


def test_a_version_with_an_infinite_epoch_count_fails_with_a_message(project):
    project.script("a.py", versions_code('versions.addV("v1", epoc_count=float("inf"))'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1
    assert "a.py:v1: EPOC_COUNT must be a positive number, not inf" in result.output
    assert "Traceback" not in result.output
    strict(project.outputs / "results.jsonl")


SYSCALL = re.compile(r'^(\d+)\s+(rename|renameat2?|fsync|fdatasync)\((.*)\)\s+=\s+0')


def durable_files(outputs, line):
    """The folder of a rename into outputs/ that must survive a power cut, or None."""
    paths = re.findall(r'"([^"]+)"', line)
    if not paths:
        return None
    target = paths[-1]
    if not target.startswith(str(outputs)):
        return None
    passing = ("/.progress/", "/.listings/", "/.heartbeats/")  # views, rewritten all the time
    if any(part in target for part in passing):
        return None
    if "/model_ckpts/" in target and "/.mlpipeline/" not in target:
        return None  # the user's own files in model_dir (the test model's checkpoint)
    return os.path.dirname(target)


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace(1) to watch the system calls")
def test_every_atomic_write_under_outputs_syncs_its_folder(tmp_path):
    project = Project(tmp_path / "ascii")  # strace writes other letters as escapes
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2", fail_in="train")'))
    project.queue(["a.py"])
    trace = tmp_path / "trace.txt"
    command = ["strace", "-f", "-qq", "-y", "-e", "trace=rename,renameat,renameat2,fsync,fdatasync", "-o", str(trace)]
    result = subprocess.run(command + project.command("-r"), env=project._env(None), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    pending = {}  # pid -> folders renamed into and not synced since
    renamed = set()
    for line in trace.read_text().splitlines():
        match = SYSCALL.match(line)
        if not match:
            continue
        pid, call, arguments = match.groups()
        if call.startswith("rename"):
            folder = durable_files(project.outputs, arguments)
            if folder:
                pending.setdefault(pid, set()).add(folder)
                renamed.add(folder)
        else:
            synced = re.match(r"\d+<(.*)>", arguments)
            if synced:
                pending.get(pid, set()).discard(synced.group(1))
    assert renamed >= {str(project.outputs / ".pending"), str(project.outputs / "model_ckpts" / "a" / ".mlpipeline")}
    assert not any(pending.values()), f"renamed into, never synced: {pending}"
    # The journal's folder is synced once the journal is created, too.
    assert re.search(rf"fsync\(\d+<{re.escape(str(project.outputs))}>\)", trace.read_text())
