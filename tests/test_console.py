"""SPEC 8: what the terminal shows: start and end lines, a progress bar per running version
from report(), the queue's counts; plain lines when stdout is not a terminal."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

from conftest import Project, versions_code

REPORTING = "learning_rate=0.1, dataloader=Data(), batch_size=1, epoc_count=1"


def reporting_project(project: Project) -> None:
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nworkers = 2\n')
    project.script(
        "net.py",
        versions_code('versions.addV("a", sleep_per_step=0.01)', 'versions.addV("b", sleep_per_step=0.01)', defaults=REPORTING),
    )
    project.script("other.py", versions_code('versions.addV("c")', defaults=REPORTING))
    project.queue(["net.py", "other.py"])


def test_without_a_terminal_progress_is_plain_lines(project):
    reporting_project(project)
    result = project.run("-r")
    assert result.returncode == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "\r" not in out
    for label in ("net.py:a", "net.py:b", "other.py:c"):
        assert f"▶ {label}" in out
        assert re.search(rf"■ {re.escape(label)} finished in \d+\.\d\d s", out)
        # The first report() of each version is shown at once, later ones at most every 10 s.
        assert re.search(rf"^{re.escape(label)} step 1/100 loss=1$", out, re.M), out
    assert len(re.findall(r"^net\.py:a step ", out, re.M)) == 1
    counts = re.findall(r"^queue: .*$", out, re.M)
    assert len(counts) == 3
    # Two workers: other.py is listed by the time the first version ends, so every count is known.
    assert counts[-1] == "queue: 3 finished"
    assert all("pending" in line or "running" in line for line in counts[:-1])
    # The log has the report too (rate-limited), and no escape codes ever.
    log = project.log_text()
    assert "INFO net.py:a step 1/100 loss=1" in log
    assert "\x1b" not in log


def test_on_a_terminal_each_running_version_has_a_progress_bar(project):
    reporting_project(project)
    env = Project._env({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    env.pop("NO_COLOR", None)
    env.pop("CI", None)  # rich takes CI for a non-interactive terminal: no live display
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        project.command("-r"), stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True
    )
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(main)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert process.returncode == 0, screen
    assert "━" in screen  # a bar was drawn
    assert re.search(r"net\.py:a[^\n]*━[^\n]*\d+/100", screen), screen  # steps done of total, beside its label
    assert "\x1b[" in screen  # colour and cursor control on a terminal...
    assert "\x1b" not in project.log_text()  # ...and never in a file
    assert "\x1b" not in project.output_text()


def test_names_and_lines_print_as_written_not_as_emoji(project):
    # rich reads ":fire:" and ":a:" as emoji codes; "x.py:a: ..." is how a label meets a colon.
    project.script("x.py", versions_code('versions.addV("a", print_lines=1)', defaults=REPORTING))
    project.queue(["x.py"], test=True)
    result = project.run()
    assert result.returncode == 0, result.output
    assert "x.py:a | hello from a" in result.stdout
    project.script("x.py", versions_code('versions.addV("a")', defaults=REPORTING) + 'print(":fire: :a: ready")\n')
    result = project.run()
    assert ":fire: :a: ready" in result.stdout and "\U0001f525" not in result.stdout


NOISY = '''
import os, sys
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
GRAPH = ("E0000 00:00:1795502063.296914   26507 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool "
         "which is not in the op definition: Op<name=MapDataset> This may be expected if your graph generating binary is newer "
         " than this binary. Unknown attributes will be ignored. NodeDef: {{node ParallelMapDatasetV2/_15}}")
REAL = "E0000 00:00:1795502063.3   26507 cuda_driver.cc:100] failed call to cuInit: UNKNOWN ERROR (303)"
ONEDNN = ("I0000 00:00:1796178507.771228    8665 port.cc:153] oneDNN custom operations are on. You may see slightly "
          "different numerical results due to floating-point round-off errors from different computation orders.")


class Noisy(Model):
    def train_model(self, data, steps):
        for line in (ABSL, ONEDNN, GRAPH, REAL, "level " + os.environ.get("TF_CPP_MIN_LOG_LEVEL", "unset")):
            print(line, file=sys.stderr, flush=True)

    def evaluate_model(self, data, steps):
        return {}


versions = Versions(0.1, SplitDataLoader([1], [1]), 1, 1)
versions.addV("v")
MODEL = Noisy(versions)
'''


def test_tensorflows_start_up_lines_are_quiet_unless_the_user_asks_and_errors_stay(project):
    project.script("noisy.py", NOISY, prelude=False)
    project.queue(["noisy.py"])
    project.queue(["noisy.py"], test=True)
    result = project.run("-r")
    assert result.returncode == 0, result.output
    log = project.log_text()
    assert "level 1" in log and "failed call to cuInit" in log  # a real error still shows
    assert "absl::InitializeLog" not in log and "Unknown attributes will be ignored" not in log and "oneDNN" not in log
    dry = project.run()
    assert "failed call to cuInit" in dry.stdout and "absl::InitializeLog" not in dry.stdout and "oneDNN" not in dry.stdout
    loud = project.run("-r", env={"TF_CPP_MIN_LOG_LEVEL": "0"})  # the user's own setting: everything shows
    assert loud.returncode == 0
    log = project.log_text()
    assert "level 0" in log and log.count("absl::InitializeLog") == 1 and "Unknown attributes will be ignored" in log
    assert log.count("oneDNN custom operations are on") == 1


def test_an_edit_of_the_queue_shows_in_its_counts_while_a_version_runs(project):
    """The counts line follows an edit of models.config made while every slot is busy, not
    only the next end."""
    import threading

    gate = project.root / "go"
    project.script("slow.py", versions_code(f'versions.addV("a", wait_for={str(gate)!r})'))
    project.script("more.py", versions_code('versions.addV("b")', 'versions.addV("c")'))
    project.queue(["slow.py"])
    daemon = project.start("-r")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(daemon.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        project.wait_for(lambda: project.calls("train"), what="slow.py:a training")
        project.queue(["slow.py", "more.py"])
        project.wait_for(lambda: any(line.startswith("queue:") for line in lines), what="a counts line", timeout=30)
        (shown,) = [line.strip() for line in lines if line.startswith("queue:")]
        assert "1 running" in shown and "1 script not listed yet" in shown, shown
        assert not gate.exists() and daemon.poll() is None  # while slow.py:a still runs
    finally:
        gate.touch()
        assert daemon.wait(timeout=60) == 0
        reader.join(timeout=10)
    counts = [line.strip() for line in lines if line.startswith("queue:")]
    assert counts[-1] == "queue: 3 finished", counts


def test_a_value_that_is_no_number_takes_a_short_place_in_a_report_line():
    # A progress file holding a list 900 levels deep made `status` print 1,800 brackets.
    from mlpipeline.watch.console import describe_report

    deep: list = []
    inner = deep
    for _ in range(900):
        inner.append([])
        inner = inner[0]
    line = describe_report(5, 10, {"loss": 0.25, "deep": deep, "note": "x" * 100, "n": 3})
    assert line == "step 5/10 loss=0.25 deep=" + "[" * 40 + "... note=" + "x" * 40 + "... n=3"
