"""`mlpipeline compare` and `mlpipeline plot` over a real queue's records."""
import csv
import io
import json
import math
import os
import re
from pathlib import Path

import pytest

LINE = '''
import math
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Line(Model):
    def train_model(self, data, steps):
        rate = self.current_version["learning_rate"]
        if self.current_version.get("broken"):
            raise RuntimeError("broken on purpose")
        for step in range(1, steps + 1):
            # accuracy peaks at step 10, then falls back: its best is not its last
            self.report(step=step, total=steps, loss=math.exp(-rate * step), accuracy=1 - abs(step - 10) / 100)

    def evaluate_model(self, data, steps):
        rate = self.current_version["learning_rate"]
        return {"mse": round(1 / (1 + rate * 10), 6), "accuracy": round(0.5 + rate, 6)}


versions = Versions(0.1, SplitDataLoader(list(range(100)), list(range(20))), 10, 3)
versions.addV("fast", learning_rate=0.3)
versions.addV("slow", learning_rate=0.01, model_dir_suffix="slow", width=4)
versions.addV("broken", model_dir_suffix="broken", broken=True)
MODEL = Line(versions)
'''


@pytest.fixture
def ran(project):
    project.script("line.py", LINE, prelude=False)
    project.queue(["line.py"])
    result = project.run("-r")
    assert result.returncode == 1, result.output  # the broken version failed
    return project


def compare_json(project, *args):
    result = project.run("compare", "--json", *args)
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def test_compare_shows_what_differs_the_evaluations_and_the_metrics(ran):
    rows = compare_json(ran)
    assert [row["version"] for row in rows] == ["line.py:fast", "line.py:slow"]  # finished runs only
    fast, slow = rows
    assert list(fast)[:4] == ["version", "state", "learning_rate", "width"]  # the parameters that differ
    assert "batch_size" not in fast and "order" not in fast and "model_dir_suffix" not in fast
    assert (fast["learning_rate"], slow["learning_rate"], fast["width"], slow["width"]) == (0.3, 0.01, None, 4)
    assert (fast["eval_test.accuracy"], fast["eval_train.mse"]) == (0.8, 0.25)
    assert fast["last.loss"] == pytest.approx(math.exp(-0.3 * 30)) and fast["last.accuracy"] == pytest.approx(0.8)
    assert (fast["steps"], fast["state"]) == (30, "finished") and fast["duration_s"] > 0

    best = compare_json(ran, "--best")[0]
    assert best["best.accuracy"] == pytest.approx(1.0)  # at step 10, higher is better
    assert best["best.loss"] == pytest.approx(math.exp(-0.3 * 30))  # lower is better

    failed = compare_json(ran, "--any-state", "line.py:broken")
    assert [(row["version"], row["state"]) for row in failed] == [("line.py:broken", "failed")]

    # A row a daemon is writing (or a crash cut short) hides no earlier run of its version.
    results = ran.outputs / "results.jsonl"
    with open(results, "a") as handle:
        handle.write(results.read_text().splitlines()[0][:150])
    both = ran.run("compare", "--json", "line.py:fast", "line.py:typo")
    assert [row["version"] for row in json.loads(both.stdout)] == ["line.py:fast"]
    assert "line.py:typo: results.jsonl has no finished run of it; left out" in both.stderr


def test_compare_sorts_and_writes_csv_markdown_and_plain_text(ran):
    assert [row["version"] for row in compare_json(ran, "--sort", "-eval_train.mse")] == ["line.py:slow", "line.py:fast"]
    # A bare name that is no column is the evaluation on test: eval_test.mse, 0.25 for fast.
    assert [row["version"] for row in compare_json(ran, "--sort", "mse")] == ["line.py:fast", "line.py:slow"]
    assert [row["version"] for row in compare_json(ran, "--sort", "-mse")] == ["line.py:slow", "line.py:fast"]
    assert [row["version"] for row in compare_json(ran, "--sort", "loss")][0] == "line.py:fast"
    unknown = ran.run("compare", "--sort", "nonsense")
    assert unknown.returncode == 2 and "--sort nonsense: no such column" in unknown.output
    for empty in ("", "-"):  # names no column: said, never taken for no --sort
        nameless = ran.run("compare", "--sort", empty)
        assert nameless.returncode == 2 and "--sort '': no such column" in nameless.output, nameless.output

    table = list(csv.reader(io.StringIO(ran.run("compare", "--csv").stdout)))
    assert table[0][:3] == ["version", "state", "learning_rate"] and len(table) == 3
    markdown = ran.run("compare", "--markdown", "line.py:fast").stdout.splitlines()
    assert markdown[0].startswith("| version | state |") and markdown[1].startswith("|---|---|")
    assert markdown[2].startswith("| line.py:fast | finished |")
    plain = ran.run("compare")  # piped: plain columns, no escape codes
    assert plain.returncode == 0 and "\x1b" not in plain.stdout
    assert plain.stdout.splitlines()[0].split()[:3] == ["version", "state", "learning_rate"]


def test_a_selection_that_matches_nothing_is_named_with_a_likely_meaning(ran):
    result = ran.run("compare", "lin.py")
    assert result.returncode == 1 and "no run to compare" in result.output
    assert "lin.py: results.jsonl has no finished run of it; left out; did you mean line.py?" in result.output
    result = ran.run("compare", "line.py:fats", "line.py:slow", "line.py:broken")
    assert result.returncode == 0 and "line.py:fats: results.jsonl has no finished run of it; left out; did you mean line.py:fast?" in result.output
    assert "line.py:broken: results.jsonl has no finished run of it; left out; it has runs, none finished (--any-state shows them)" in result.output


def test_compare_with_nothing_to_compare_says_so(project):
    project.script("line.py", LINE, prelude=False)
    result = project.run("compare")
    assert result.returncode == 1 and "no run to compare" in result.output


def test_a_broken_scripts_row_is_no_stranger_to_compare_and_plot(project, tmp_path):
    # The row of a script whose versions could not be learned names no version (outputs.md).
    project.script("line.py", LINE, prelude=False)
    project.write("models/broken.py", "x = (\n")
    project.queue(["broken.py", "line.py"])
    project.run("-r")
    assert [row["version"] for row in project.results()][0] is None
    for command in (["compare"], ["compare", "--any-state"], ["plot", "loss", "-o", str(tmp_path / "loss.png")]):
        result = project.run(*command)
        assert result.returncode == 0 and "warning" not in result.output and "skipped" not in result.output, (command, result.output)


def test_a_run_cut_off_is_compared_with_the_steps_it_reached_and_its_parameters(project):
    import signal

    from conftest import versions_code

    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.05, width=3)', defaults="learning_rate=0.1, dataloader=Data(400), batch_size=1, epoc_count=1"))
    project.queue(["a.py"])
    daemon = project.start("-r")
    # The daemon's log has the first report once the daemon took it in: a SIGINT before that
    # leaves the steps trained unknown (null), truly, and this test would race it.
    project.wait_for(lambda: "loss=" in project.log_text(), what="the first report in the log")
    daemon.send_signal(signal.SIGINT)
    daemon.communicate(timeout=60)
    [row] = project.results()
    assert row["status"] == "interrupted" and row["parameters"]["width"] == 3  # was null: no result came
    assert "  width: 3" in project.output_text()
    [compared] = compare_json(project, "--any-state")
    assert compared["steps"] == row["steps"]["trained"] < 400  # how far it got, not its total


def line_points(svg: str):
    """The vertex counts of the plotted lines (matplotlib's line2d groups), grid lines included."""
    groups = re.findall(r'<g id="line2d_\d+">\s*<path d="([^"]*)"', svg)
    return [len(re.findall(r"[ML]", d)) for d in groups]


def test_plot_writes_a_figure_with_a_curve_per_version(ran, tmp_path):
    figure = tmp_path / "accuracy.svg"
    result = ran.run("plot", "accuracy", "-o", str(figure))
    assert result.returncode == 0, result.output
    svg = figure.read_text()
    for text in ("line.py:fast", "line.py:slow", "script:version", ">step<", ">accuracy<", "accuracy over steps"):
        assert text in svg
    assert "line.py:broken" not in svg
    assert sorted(n for n in line_points(svg) if n > 5) == [30, 30]  # one curve per version, every report

    png = tmp_path / "loss.png"
    assert ran.run("plot", "loss", "-o", str(png), "line.py:fast", "--log").returncode == 0  # options anywhere
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    log_svg = tmp_path / "loss.svg"
    assert ran.run("plot", "loss", "-o", str(log_svg), "--log").returncode == 0
    assert ">\u2212</tspan>" in log_svg.read_text()  # 10^-4 and the like: a log scale's ticks

    missing = ran.run("plot", "nonsense")
    assert missing.returncode == 1 and "the metrics reported are: accuracy, loss" in missing.output
    assert ran.run("plot", "loss", "-o", str(tmp_path / "loss.pdf")).returncode == 2
    nameless = ran.run("plot", "loss", "-o", "")  # not taken for no -o
    assert nameless.returncode == 2 and "-o names no file" in nameless.output


def test_plot_says_which_version_reported_the_metric_as_no_number(project, tmp_path):
    words = LINE.replace("loss=math.exp(-rate * step)", 'loss=float("nan") if self.current_version.get("nan") else "high" if self.current_version.get("text") else math.exp(-rate * step)')
    words = words.replace('versions.addV("broken", model_dir_suffix="broken", broken=True)', 'versions.addV("nan", model_dir_suffix="nan", nan=True)\nversions.addV("text", model_dir_suffix="text", text=True)')
    project.script("line.py", words, prelude=False)
    project.queue(["line.py"])
    assert project.run("-r").returncode == 0
    result = project.run("plot", "loss", "-o", str(tmp_path / "loss.png"))
    assert result.returncode == 0, result.output
    for version in ("nan", "text"):
        assert f"line.py:{version} reported 'loss' as no number (NaN, infinite, or text) at every report; left out" in result.output
    assert "reported no 'loss'" not in result.output


def test_plot_without_matplotlib_says_what_to_install(ran, tmp_path):
    blocked = tmp_path / "no matplotlib"
    (blocked / "matplotlib").mkdir(parents=True)
    (blocked / "matplotlib" / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = {"PYTHONPATH": f"{blocked}{os.pathsep}{Path(__file__).resolve().parents[1]}"}
    result = ran.run("plot", "loss", "-o", str(tmp_path / "x.png"), env=env)
    assert result.returncode == 2
    assert "pip install 'mlpipeline[plot]'" in result.output
    assert not (tmp_path / "x.png").exists()


def test_plot_of_many_versions_draws_every_curve_and_names_none(project, tmp_path):
    many = LINE.replace('versions.addV("broken", model_dir_suffix="broken", broken=True)\n', "".join(
        f'versions.addV("v{index}", learning_rate={0.01 * (index + 1)}, model_dir_suffix="v{index}")\n' for index in range(23)
    ))
    project.script("line.py", many, prelude=False)
    project.queue(["line.py"])
    assert project.run("-r").returncode == 0
    figure = tmp_path / "loss.svg"
    result = project.run("plot", "loss", "-o", str(figure))
    assert result.returncode == 0, result.output
    assert "loss of 25 versions, unnamed in the figure" in result.output
    svg = figure.read_text()
    assert "loss over steps (25 versions)" in svg and "line.py:" not in svg and "script:version" not in svg
    assert svg.count("<path d=") >= 25  # a path a curve, in one collection
