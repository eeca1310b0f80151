"""SPEC 5 and 7, execution mode: full runs, failures logged and skipped, every record written."""
import json
import math
import re

from conftest import scripts_of, versions_code

from mlpipeline.utils import ExecutionModeKeys

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (INFO|WARNING|ERROR|OUT|ERR|DEBUG|CRITICAL) \S+ ")


def test_full_runs_with_the_steps_formula_and_every_record(project):
    project.script(
        "a.py",
        versions_code(
            'versions.addV("v1", model_dir_suffix="one")',
            'versions.addV("v2", batch_size=30, epoc_count=1.5, print_lines=2)',
        ),
    )
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    # 100 samples: ceil(2 * 100 / 10) = 20 steps; ceil(1.5 * 100 / 30) = 5 steps.
    assert [(c["version"], c["steps"]) for c in project.calls("train")] == [("v1", 20), ("v2", math.ceil(150 / 30))]
    assert [c["steps"] for c in project.calls("eval")] == [100, 50, 100, 50]  # the sample counts
    pre = project.calls("pre")
    assert {c["mode"] for c in pre} == {ExecutionModeKeys.TRAIN}
    assert pre[0]["model_dir"] == str(project.outputs / "model_ckpts" / "a-one")
    assert pre[1]["model_dir"] == str(project.outputs / "model_ckpts" / "a")

    events = [(e["event"], e["version"]) for e in project.journal()]
    assert events == [
        ("claimed", "v1"),
        ("started", "v1"),
        ("finished", "v1"),
        ("claimed", "v2"),
        ("started", "v2"),
        ("finished", "v2"),
    ]
    for event in project.journal():
        assert event["host"] and event["pid"] and len(event["sha256"]) == 64 and event["script"] == "a.py"

    results = project.results()
    assert scripts_of(results) == ["a.py:v1", "a.py:v2"]
    first = results[0]
    assert first["status"] == "finished"
    assert first["eval_train"] == {"accuracy": 0.5, "steps": 100}
    assert first["eval_test"] == {"accuracy": 0.5, "steps": 50}
    assert first["steps"] == {"trained": 20, "total": 20, "already_trained": None}
    assert first["parameters"]["dataloader"] == "Data"  # objects by class name
    assert first["parameters"]["batch_size"] == 10
    assert first["metrics"] == {"loss": 1.0 / 20}  # the last report()
    assert first["duration_s"] > 0

    output = project.output_text()
    assert "a.py:v1    FINISHED" in output and "a.py:v2    FINISHED" in output
    assert "dataloader: Data" in output
    assert "steps:          20 of 20" in output
    assert " at 0x" not in output  # never a memory address

    log = project.log_text()
    assert "\x1b" not in log
    for line in log.splitlines():
        assert LOG_LINE.match(line), line
    assert re.search(r" OUT a\.py:v2 hello from v2$", log, re.M)
    assert "a.py:v1 finished in" in log


def test_failures_are_logged_and_the_queue_goes_on(project):
    project.script(
        "a.py",
        versions_code(
            'versions.addV("ok1")',
            'versions.addV("boom", fail_in="train")',
            'versions.addV("dies", exit_in="train", exit_code=3)',
            'versions.addV("ok2")',
        ),
    )
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1
    assert [c["version"] for c in project.calls("train")] == ["ok1", "boom", "dies", "ok2"]
    statuses = {r["version"]: r["status"] for r in project.results()}
    assert statuses == {"ok1": "finished", "boom": "failed", "dies": "failed", "ok2": "finished"}
    by_version = {r["version"]: r for r in project.results()}
    assert "RuntimeError: deliberate failure in train" in by_version["boom"]["reason"]
    assert by_version["dies"]["exit_code"] == 3
    assert "exited with status 3" in by_version["dies"]["reason"]
    log = project.log_text()
    assert "ERROR a.py:boom Traceback (most recent call last):" in log
    assert "ERROR a.py:boom RuntimeError: deliberate failure in train" in log
    assert "a.py:boom    FAILED" in project.output_text()


def test_fail_fast_stops_at_the_first_failure(project):
    project.script("a.py", versions_code('versions.addV("boom", fail_in="pre")', 'versions.addV("never")'))
    project.queue(["a.py"])
    result = project.run("-r", "--fail-fast")
    assert result.returncode == 1
    assert [c["version"] for c in project.calls("pre")] == ["boom"]
    # With -u the end line tells the version never started from one the journal had ended.
    project.script("b.py", versions_code('versions.addV("done")'))
    project.queue(["b.py"])
    assert project.run("-r").returncode == 0
    project.queue(["a.py", "b.py"])
    result = project.run("-r", "-u", "--fail-fast", "--retry-failed")
    assert result.returncode == 1 and "1 failed, 1 skipped by -u, 1 not started; records in" in result.output, result.output


def test_no_log_writes_no_log_or_output_but_keeps_the_journal(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r", "-n").returncode == 0
    assert not list(project.outputs.glob("log-*")) and not list(project.outputs.glob("output-*"))
    assert [e["event"] for e in project.journal()] == ["claimed", "started", "finished"]


def test_broken_scripts_are_failures_and_the_rest_runs(project):
    project.script("no_model.py", "x = 1\n", prelude=False)
    project.script("syntax.py", "def f(:\n", prelude=False)
    project.script("not_model.py", "MODEL = 3\n", prelude=False)
    project.script(
        "params.py",
        versions_code('versions.addV("no_epochs", epoc_count=None)', 'versions.addV("fine", epoc_count=1)',
                      defaults="learning_rate=0.1, dataloader=Data(), batch_size=10"),
    )
    project.script("good.py", versions_code('versions.addV("v1")'))
    project.queue(["no_model.py", "syntax.py", "not_model.py", "params.py", "good.py"])
    result = project.run("-r")
    assert result.returncode == 1
    assert [(c["script"], c["version"]) for c in project.calls("train")] == [("params.py", "fine"), ("good.py", "v1")]
    log = project.log_text()
    assert "ERROR no_model.py no_model.py defines no MODEL" in log
    assert "ERROR syntax.py syntax.py:1: syntax error" in log
    assert "ERROR not_model.py not_model.py: MODEL is an int, not a mlpipeline.helper.Model" in log
    assert "params.py:no_epochs has no EPOC_COUNT" in log
    failed = [r for r in project.results() if r["status"] == "failed"]
    assert [(r["script"], r["version"]) for r in failed] == [
        ("no_model.py", None),
        ("syntax.py", None),
        ("not_model.py", None),
        ("params.py", "no_epochs"),
    ]
    assert "Traceback" not in result.output.split("syntax.py:1")[0]  # no traceback from mlpipeline itself


def test_missing_script_or_version_at_start_is_a_config_error(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.queue(["ghost.py", "a.py", "other.py"])
    result = project.run("-r")
    assert result.returncode == 2
    assert "error: models.config:5: ghost.py does not exist in " in result.output and "(nor do other.py)" in result.output
    project.queue(["a.py:v1", "a.py:v7"])
    result = project.run("-r")
    assert result.returncode == 2
    assert "models.config:5: a.py has no version 'v7' (its versions: v1, v2)" in result.output
    assert project.calls("train") == [] and not project.journal()  # nothing ran, nothing claimed
    project.queue(["a.py:v1"], test=True)
    project.write("models_test.config", (project.root / "models_test.config").read_text().replace('"a.py:v1"', '"a.py:v1", "ghost.py"'))
    result = project.run()
    assert result.returncode == 2 and "models_test.config:5: ghost.py does not exist" in result.output


def test_a_script_gone_while_the_queue_runs_is_a_warning_and_skipped(project):
    project.script("a.py", versions_code('versions.addV("v1", sleep_per_step=0.05)'))
    project.script("b.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "b.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="a.py to train")
    (project.models / "b.py").unlink()
    output, _ = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, output
    assert "WARNING mlpipeline models.config:5: b.py does not exist" in project.log_text()
    assert [c["script"] for c in project.calls("train")] == ["a.py"]


def test_whitelist_order_and_single_versions(project):
    for name in ("a.py", "b.py", "c.py"):
        project.script(name, versions_code('versions.addV("x")', 'versions.addV("y")'))
    project.queue(["c.py", "a.py:y", "b.py", "a.py:x"])
    assert project.run("-r").returncode == 0
    ran = [(c["script"], c["version"]) for c in project.calls("train")]
    # a.py's two entries merge at its first place; its versions keep the script's order.
    assert ran == [("c.py", "x"), ("c.py", "y"), ("a.py", "x"), ("a.py", "y"), ("b.py", "x"), ("b.py", "y")]


def test_blacklist_runs_every_script_but_the_listed(project):
    for name in ("b.py", "a.py", "sub/c.py", "skip.py"):
        project.script(name, versions_code('versions.addV("x")', 'versions.addV("y")'))
    (project.outputs).mkdir(parents=True)
    (project.outputs / "stray.py").write_text("raise SystemExit('outputs are never scripts')\n")
    project.queue([], blacklist=["skip.py", "a.py:y"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    ran = [(c["script"], c["version"]) for c in project.calls("train")]
    assert ran == [("a.py", "x"), ("b.py", "x"), ("b.py", "y"), ("c.py", "x"), ("c.py", "y")]
    assert (project.outputs / "model_ckpts" / "sub" / "c").is_dir()


def test_only_restricts_the_queue(project):
    for name in ("a.py", "b.py"):
        project.script(name, versions_code('versions.addV("x")', 'versions.addV("y")'))
    project.queue(["a.py", "b.py"])
    assert project.run("-r", "--only", "b.py", "--only", "a.py:y").returncode == 0
    assert [(c["script"], c["version"]) for c in project.calls("train")] == [("a.py", "y"), ("b.py", "x"), ("b.py", "y")]


def test_results_are_plain_json_per_line(project):
    project.script("a.py", versions_code('versions.addV("v1", custom_paramters={"layers": [1, 2], "fn": len})'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    line = (project.outputs / "results.jsonl").read_text().splitlines()[0]
    record = json.loads(line)
    assert record["parameters"]["layers"] == [1, 2]
    assert record["parameters"]["fn"] == "builtin_function_or_method"
    for key in ("script", "version", "status", "eval_train", "eval_test", "steps", "duration_s", "parameters"):
        assert key in record


def test_a_listing_killed_from_outside_is_asked_again_before_its_script_is_called_broken(project):
    # kill -9 of the process listing the versions (an out-of-memory kill, say), once.
    marker = project.root / "killed-once"
    prelude = f"import os\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w').close()\n    os.kill(os.getpid(), 9)\n"
    project.script("a.py", versions_code('versions.addV("v1")'))
    script = project.models / "a.py"
    script.write_text(prelude + script.read_text())
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    assert marker.exists() and [(row["version"], row["status"]) for row in project.results()] == [("v1", "finished")]


def test_only_that_matches_nothing_is_a_usage_error(project):
    project.script("a.py", versions_code('versions.addV("x")'))
    project.queue(["a.py"])
    project.queue(["a.py"], test=True)
    for mode in ([], ["-r"]):
        result = project.run(*mode, "--only", "b.py")
        assert result.returncode == 2
        assert "--only: b.py matches nothing that" in result.output
    result = project.run("-r", "--only", "aa.py")
    assert result.returncode == 2 and "--only: aa.py matches nothing that models.config queues; did you mean a.py?" in result.output
    assert project.calls() == []


def test_a_suffix_that_is_a_path_is_refused(project):
    project.script("a.py", versions_code('versions.addV("x", model_dir_suffix="../../escape")', 'versions.addV("y")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1
    assert "a.py:x: MODEL_DIR_SUFFIX '../../escape' must be a plain name" in project.log_text()
    assert [c["version"] for c in project.calls("train")] == ["y"]


def test_use_history_says_what_it_skipped(project):
    project.script("a.py", versions_code('versions.addV("x")', 'versions.addV("y")'))
    project.queue(["a.py"])
    assert project.run("-r", "-u").returncode == 0
    again = project.run("-r", "-u")
    assert "2 skipped by -u" in again.output
    assert "execution mode ended: 2 skipped by -u" in project.log_text()


def test_a_failures_traceback_is_in_its_record_and_its_output_block(project):
    # Only the log had it: a day later, or with -n, nothing said where the version failed.
    project.script("a.py", versions_code('versions.addV("bad", fail_in="train")'))
    project.queue(["a.py"])
    assert project.run("-r", "-n").returncode == 1
    [row] = project.results()
    traceback = row["traceback"]
    assert traceback.startswith("Traceback (most recent call last):") and traceback.endswith("RuntimeError: deliberate failure in train")
    assert 'a.py", line' in traceback and "in train_model" in traceback and "mlpipeline/child" not in traceback
    assert project.run("-r").returncode == 1
    block = project.output_text()
    assert "traceback:      Traceback (most recent call last):" in block and "                RuntimeError: deliberate failure in train" in block


def test_what_a_script_prints_as_its_import_fails_is_on_the_console(project):
    # -r showed only "failed in import: SystemExit: 2"; argparse's words were in the log alone.
    project.script("argp.py", "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('data')\nargs = parser.parse_args()\n", prelude=False)
    project.queue(["argp.py"])
    result = project.run("-r")
    assert result.returncode == 1
    assert "argp.py | argp.py: error: the following arguments are required: data" in result.output, result.output
    assert "argp.py failed in import: SystemExit: 2" in result.output
