"""Every report() of a run is kept, in order, in <model_dir>/.mlpipeline/metrics.jsonl: across
a daemon killed mid-run and the resume after it, and a fresh run keeps the old curve aside."""
import json
import re

from conftest import versions_code
from test_daemon_death import SLOW, kill_daemon_mid_version

from mlpipeline.records.metric_history import read_history

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")


def history_rows(project, name="metrics.jsonl"):
    path = project.outputs / "model_ckpts" / "a" / ".mlpipeline" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_reports_survive_a_killed_daemon_and_the_resume_appends(project):
    project.script("a.py", versions_code(SLOW.replace("epoc_count=20", "epoc_count=30")))  # 300 steps
    project.queue(["a.py"])
    cut_at = kill_daemon_mid_version(project, steps=80)
    first = history_rows(project)
    steps = [row["step"] for row in first]
    assert steps == list(range(1, len(steps) + 1))  # in order, none twice
    # Reports are written at least every second (and a loop pass): what the version reported
    # up to well before the kill is there; a step takes 0.05 s and more, so 2.5 s is 50 steps.
    assert len(steps) >= cut_at - 50, (len(steps), cut_at)
    (run_a,) = {row["run_id"] for row in first}
    assert all(ISO.match(row["time"]) for row in first)
    assert first[0]["metrics"] == {"loss": 1.0} and first[0]["total"] == 300

    # The daemon died mid-write, say: the last line is cut short.
    path = project.outputs / "model_ckpts" / "a" / ".mlpipeline" / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:-10])
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    rows = list(read_history(project.outputs / "model_ckpts" / "a"))
    assert rows[: len(first) - 1] == first[:-1]  # the resumed run appends to the same curve
    resumed = rows[len(first) - 1:]  # the cut line alone is lost, not the next report
    assert {row["run_id"] for row in resumed} != {run_a} and len({row["run_id"] for row in resumed}) == 1
    assert [row["step"] for row in resumed] == list(range(cut_at + 1, 301))


def test_a_fresh_run_keeps_the_old_curve_aside(project):
    project.script("a.py", versions_code('versions.addV("a", epoc_count=1)'))  # 10 steps
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    old = history_rows(project)
    assert [row["step"] for row in old] == list(range(1, 11))
    assert project.run("-r").returncode == 0  # without -u: run again, from a clean model_dir
    new = history_rows(project)
    assert [row["step"] for row in new] == list(range(1, 11)) and new[0]["run_id"] != old[0]["run_id"]
    assert history_rows(project, f"metrics-{old[-1]['run_id']}.jsonl") == old
    # A fresh run sets the old curve aside as it starts, whether it reports or not.
    project.script("a.py", versions_code('versions.addV("a", epoc_count=1, fail_in="pre")'))
    assert project.run("-r").returncode == 1
    assert not (project.outputs / "model_ckpts" / "a" / ".mlpipeline" / "metrics.jsonl").exists()
    assert history_rows(project, f"metrics-{new[-1]['run_id']}.jsonl") == new


def test_a_history_removed_while_its_run_writes_it_is_written_anew_and_said(project):
    # The writer kept appending to the file it had opened: every later report went nowhere.
    project.script("a.py", versions_code('versions.addV("v", sleep_per_step=0.05, model_dir_suffix="v")', defaults="learning_rate=0.1, dataloader=Data(80), batch_size=1, epoc_count=1"))
    project.queue(["a.py"])
    history = project.outputs / "model_ckpts" / "a-v" / ".mlpipeline" / "metrics.jsonl"
    daemon = project.start("-r")
    project.wait_for(history.exists, what="the history")
    history.unlink()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    steps = [json.loads(line)["step"] for line in history.read_text().splitlines()]
    assert steps and steps[-1] == 80 and steps == sorted(steps)
    assert f"{history} was removed or replaced while its run wrote it; its next reports go to a new one" in project.log_text()


HISTOGRAM = """
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Histograms(Model):
    def train_model(self, data, steps):
        for step in range(1, steps + 1):
            # A histogram of 100,000 values logged beside the loss at every step: 2 MB as JSON.
            self.report(step=step, total=steps, loss=1.0 / step, hist={str(i): i * 0.5 for i in range(100_000)})

    def evaluate_model(self, data, steps):
        return {"acc": 1}


MODEL = Histograms(Versions(0.1, SplitDataLoader(list(range(50)), [0]), 10, 1))
MODEL.versions.addV("v")
"""


def test_a_report_too_large_loses_its_largest_metric_not_its_step_and_loss(project):
    project.script("a.py", HISTOGRAM, prelude=False)
    project.queue(["a.py"])
    done = project.run("-r")
    assert done.returncode == 0, done.output
    rows = history_rows(project)
    assert [(row["step"], row["metrics"]) for row in rows] == [(step, {"loss": 1.0 / step}) for step in range(1, 6)]
    said = "WARNING a.py:v report(): metric 'hist' (1.8 MB as JSON) is left out of the report, which holds at most 1 MB; the rest of it is kept (said once)"
    assert project.log_text().count(said) == 1, project.log_text()
    assert "an event of" not in project.log_text()
    assert project.results()[0]["metrics"] == {"loss": 0.2}


def test_a_metric_that_is_no_number_is_said_once_not_kept_silently_as_its_class_name(project):
    script = HISTOGRAM.replace(
        'loss=1.0 / step, hist={str(i): i * 0.5 for i in range(100_000)}', 'loss=numpy.array([1.0 / step, 2.0]), acc=numpy.array(0.5)'
    ).replace("from mlpipeline.helper", "import numpy\nfrom mlpipeline.helper")
    project.script("a.py", script, prelude=False)
    project.queue(["a.py"])
    done = project.run("-r")
    assert done.returncode == 0, done.output
    said = "report(): metric 'loss' is a ndarray of shape (2,), no number: it is recorded as 'ndarray'; report a number"
    assert project.log_text().count(said) == 1, project.log_text()
    assert "'acc'" not in project.log_text()  # a one-value array is its number
    assert [row["metrics"] for row in history_rows(project)][-1] == {"loss": "ndarray", "acc": 0.5}
