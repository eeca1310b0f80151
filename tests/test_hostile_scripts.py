"""What a script hands mlpipeline, and the machine it runs on, as a hostile user would make them
(found by probing the tool from the outside): values no JSON or terminal takes as they are,
exceptions of every kind, names that cannot be found again, a console that cannot be written,
paths that loop. Each costs its version at most its own failure, told truly, and the records
stay readable."""
import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import versions_code

from mlpipeline.utils import Versions

HOSTILE_SCRIPT = '''
import os
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

SURROGATE = os.fsdecode(b"img_\\xff.png")  # a file name of bytes that are not UTF-8


class Data(DataLoader):
    def get_train_input(self, mode="train", **kwargs): return [1, 2, 3]
    def get_test_input(self, **kwargs): return [1, 2]
    def get_train_sample_count(self): return 3
    def get_test_sample_count(self): return 2


class Unprintable(Exception):
    def __str__(self): raise RuntimeError("no text")


class NoItems(dict):
    def items(self): raise RuntimeError("no items")


class NoName:
    def __str__(self): raise RuntimeError("no name")
    __repr__ = __str__


class Hostile(Model):
    def train_model(self, input_fn, steps):
        case = self.current_version["case"]
        if case == "surrogate_error": raise ValueError("cannot read " + SURROGATE)
        if case == "surrogate_summary": self.add_to_summery("file " + SURROGATE)
        if case == "surrogate_report": self.report(step=1, total=3, name=SURROGATE)
        if case == "huge_report": self.report(step=1, total=3, huge=10 ** 5000)
        if case == "generator_exit": raise GeneratorExit
        if case == "base_exception": raise BaseException("base")
        if case == "unprintable": raise Unprintable()
        if case == "keyboard_interrupt": raise KeyboardInterrupt
        if case == "object_summary": self.summery = {"o": object()}
        if case == "escapes":
            self.report(step=1, total=3, **{"k\\x1b[31m": "v\\x1b[2J\\nINFO forged"})
            return
        if case == "negative_step":
            self.report(step=-5, total=3)
            raise ValueError("after a negative step")
        for step in range(steps):
            self.report(step=step + 1, total=steps, loss=1.0 / (step + 1))

    def evaluate_model(self, input_fn, steps):
        case = self.current_version["case"]
        if case == "surrogate_eval": return {"file": SURROGATE}
        if case == "no_items": return NoItems(a=1)
        if case == "nameless_key": return {NoName(): 1}
        if case == "huge_eval": return {"a": "x" * 3_000_000}
        if case == "deep_eval":
            deep = {"leaf": 1}
            for _ in range(40): deep = {"k": deep}
            return deep
        if case == "self_eval":  # a list that holds itself twice: 2**32 paths to follow
            loop = []
            loop.extend([loop, loop])
            return {"loop": loop}
        return {"accuracy": 0.5}


versions = Versions(learning_rate=0.1, dataloader=Data(), batch_size=1, epoc_count=1, case="")
for case in CASES:
    versions.addV(case, case=case)
versions.addV("surrogate_parameter", p=SURROGATE)
versions.addV("huge_parameter", p=10 ** 5000)
versions.addV("escape_parameter", p="\\x1b[31mred\\x1b[0m\\nline2\\x00nul", custom_parameters={"\\x1b[1m": 4})
MODEL = Hostile(versions)
'''

FAILING = {
    "surrogate_error": r"failed in train_model: ValueError: cannot read img_\udcff.png",
    "generator_exit": "failed in train_model: GeneratorExit",
    "base_exception": "failed in train_model: BaseException: base",
    "unprintable": "failed in train_model: Unprintable (its message could not be read: its __str__ raised)",
    "keyboard_interrupt": "failed in train_model: KeyboardInterrupt",
    "negative_step": "failed in train_model: ValueError: after a negative step",
}
FINISHING = [
    "surrogate_summary", "surrogate_report", "huge_report", "object_summary", "escapes",
    "surrogate_eval", "no_items", "nameless_key", "huge_eval", "deep_eval", "self_eval",
]


def test_what_a_script_hands_over_costs_its_version_at_most_a_true_failure(project):
    cases = list(FAILING) + FINISHING
    project.write("models/hostile.py", HOSTILE_SCRIPT.replace("CASES", repr(cases)))
    project.queue(["hostile.py"])
    result = project.run("-r", "-u", timeout=180)
    assert result.returncode == 1, result.output  # failures, each recorded
    assert "mlpipeline/" not in result.output.replace("mlpipeline/helper", "")  # no frame of ours
    rows = {row["version"]: row for row in project.results()}
    log_lines = project.log_text().splitlines()
    assert set(rows) == set(cases) | {"surrogate_parameter", "huge_parameter", "escape_parameter"}
    for version, reason in FAILING.items():
        assert rows[version]["status"] == "failed" and rows[version]["reason"].endswith(reason), rows[version]
        # The script's own traceback is in the log, its frames only.
        assert any(f"hostile.py:{version} " in line and 'hostile.py", line' in line for line in log_lines), version
    for version in FINISHING + ["surrogate_parameter", "huge_parameter", "escape_parameter"]:
        assert rows[version]["status"] == "finished", rows[version]
    # A raised KeyboardInterrupt is the script's failure, not a SIGINT nobody sent.
    assert rows["keyboard_interrupt"]["signal"] is None
    # What JSON or UTF-8 cannot hold is kept as text saying what it was.
    assert rows["surrogate_summary"]["model_summary"] == "file img_\\udcff.png\n"
    assert rows["surrogate_eval"]["eval_test"] == {"file": "img_\\udcff.png"}
    assert rows["surrogate_parameter"]["parameters"]["p"] == "img_\\udcff.png"
    assert rows["huge_parameter"]["parameters"]["p"] == "an integer of about 5001 digits"
    assert rows["object_summary"]["model_summary"] == '{"o": "object"}'  # no memory address
    assert rows["no_items"]["eval_test"] == "NoItems" and rows["nameless_key"]["eval_test"] == {"NoName": 1}
    # An evaluation past what a record holds is left out, and the log says so.
    assert rows["huge_eval"]["eval_test"] is None and rows["huge_eval"]["steps"]["trained"] == 3
    assert "eval_test (3.0 MB as JSON) is left out of the record" in project.log_text()
    # What is nested past 32 levels is said to be left out, not cut without a word.
    deep = rows["deep_eval"]["eval_test"]
    for _ in range(32):
        deep = deep["k"]
    assert deep == "dict (nested more than 32 levels deep: left out)"
    # One that holds itself is followed to a bound (a million values), then left out as too large.
    assert rows["self_eval"]["status"] == "finished" and rows["self_eval"]["eval_test"] is None
    # A negative step trained nothing that can be told: unknown, not -5.
    assert rows["negative_step"]["steps"]["trained"] is None
    # Files for people hold no escape code, NUL or memory address; the readers take every row.
    for text in (project.output_text(), project.log_text()):
        assert "\x1b" not in text and "\x00" not in text and " at 0x" not in text
    assert "  p: \\x1b[31mred\\x1b[0m\\nline2\\x00nul" in project.output_text()
    for command in (["status"], ["compare"], ["compare", "--csv"], ["compare", "--json"], ["status", "--json"]):
        shown = project.run(*command)
        assert shown.returncode == 0, (command, shown.output)
        assert "\x1b" not in shown.stdout and "warning" not in shown.output and "Traceback" not in shown.output, command
    assert "k\\x1b[31m=v\\x1b[2J\\nINFO forged" in result.output  # the end line's last report


@pytest.mark.parametrize(
    "sent, code, reason",
    [
        # A real SIGINT still stops a version (only the script's own raise is a failure).
        (signal.SIGINT, 130, "stopped by SIGINT; resumable with -u"),
        (signal.SIGHUP, 129, "stopped by SIGHUP (passed on to it as SIGTERM); resumable with -u"),
    ],
)
def test_a_stop_signal_is_the_reason_recorded(project, sent, code, reason):
    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.05)', defaults="learning_rate=0.1, dataloader=Data(400), batch_size=1, epoc_count=1"))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: project.calls("train"), what="training")
    daemon.send_signal(sent)
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == code, output
    row = project.results()[0]
    assert row["status"] == "interrupted" and row["reason"] == reason, row


def test_grid_names_never_hold_a_memory_address():
    class Optimizer:
        pass

    versions = Versions(learning_rate=0.1, dataloader=None, batch_size=1, epoc_count=1)
    assert versions.rangeOnParameters(combining_parameters=["p"], parameters={"p": [1, Optimizer()]}) == ["p=1", "p=Optimizer"]
    with pytest.raises(ValueError, match=r"'q=Optimizer' made from the values is made twice.*pass names=\[\.\.\.\]"):
        versions.rangeOnParameters(combining_parameters=["q"], parameters={"q": [Optimizer(), Optimizer()]})
    with pytest.raises(ValueError, match=r"holds ':'.*pass names="):
        versions.rangeOnParameters(combining_parameters=["d"], parameters={"d": [{"a": 1}]})


def test_test_mode_refuses_up_front_what_execution_mode_would(project):
    project.script(
        "a.py",
        versions_code(
            'versions.addV("slash", model_dir_suffix="a/b")', 'versions.addV("dots", model_dir_suffix="..")', 'versions.addV("ok")',
            'versions.addV("none", batch_size=0)', 'versions.addV("nan", epoc_count=float("nan"))', 'versions.addV("text", batch_size="32")',
            # str() of these would name a folder anew at every run (a memory address) or a list's text.
            'versions.addV("huge", model_dir_suffix=10 ** 5000)', 'versions.addV("thing", model_dir_suffix=object())',
            'versions.addV("numbered", model_dir_suffix=3)', 'versions.addV("rate", model_dir_suffix=0.5)',
        ),
    )
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 1
    assert "a.py:slash: MODEL_DIR_SUFFIX 'a/b' must be a plain name, not a path" in result.output
    assert "a.py:dots: MODEL_DIR_SUFFIX '..' must be a plain name" in result.output
    assert "a.py:none: BATCH_SIZE must be a positive integer, not 0" in result.output
    assert "a.py:nan: EPOC_COUNT must be a positive number, not nan" in result.output
    assert "a.py:text: BATCH_SIZE must be a positive integer, not '32'" in result.output
    assert "a.py:huge: MODEL_DIR_SUFFIX must be a folder name (a string), and str() of an int fails" in result.output
    assert "a.py:thing: MODEL_DIR_SUFFIX must be a folder name (a string), not an object, whose text holds its memory address" in result.output
    assert " at 0x" not in result.output
    assert not project.calls("train")  # all said at once, before any training
    # -r refuses them without starting a process, and runs the rest.
    project.queue(["a.py"])
    ran = project.run("-r")
    assert ran.returncode == 1 and {row["version"]: row["status"] for row in project.results()} == {
        "slash": "failed", "dots": "failed", "ok": "finished", "none": "failed", "nan": "failed", "text": "failed",
        "huge": "failed", "thing": "failed", "numbered": "finished", "rate": "finished",
    }
    assert sorted(call["version"] for call in project.calls("pre")) == ["numbered", "ok", "rate"]
    assert (project.outputs / "model_ckpts" / "a-3").is_dir() and (project.outputs / "model_ckpts" / "a-0.5").is_dir()
    # A name longer than the environment may hold fails its version, not test mode.
    project.script("a.py", versions_code('versions.addV("x" * 200000)', 'versions.addV("ok")'))
    result = project.run()
    assert result.returncode == 1 and "could not be started: Argument list too long" in result.output
    assert "Traceback" not in result.output


def test_a_console_that_is_closed_or_cannot_encode_costs_the_queue_nothing(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.script("é.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "é.py"])
    closed = subprocess.run(
        project.command("-r"), env=project._env(None), capture_output=False, stdout=None, stderr=subprocess.PIPE,
        text=True, timeout=120, preexec_fn=lambda: os.close(1),
    )
    assert closed.returncode == 0, closed.stderr
    assert "the console cannot be written (standard output is closed); going on without it" in closed.stderr
    assert "Traceback" not in closed.stderr
    assert [row["status"] for row in project.results()] == ["finished", "finished"]
    ascii_only = project.run("-r", env={"PYTHONIOENCODING": "ascii"})
    assert ascii_only.returncode == 0 and "Traceback" not in ascii_only.output, ascii_only.output
    assert "\\xe9.py:v1" in ascii_only.output
    for command in (["status"], ["compare"], ["status", "--json"]):
        shown = project.run(*command, env={"PYTHONIOENCODING": "ascii"})
        assert shown.returncode == 0 and "Traceback" not in shown.output, shown.output
    version = subprocess.run(
        [sys.executable, "-m", "mlpipeline", "completion", "bash"], env=project._env(None), stdout=open("/dev/full", "w"),
        stderr=subprocess.PIPE, text=True, timeout=60,
    )
    assert version.returncode == 1 and "No space left on device" in version.stderr and "Traceback" not in version.stderr


def test_paths_that_loop_or_are_no_text_are_config_errors(project, tmp_path):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    project.queue(["a.py"], test=True)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    result = subprocess.run([sys.executable, "-m", "mlpipeline", "-C", str(loop)], env=project._env(None), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"{loop}: a symbolic link that loops" in result.stderr + result.stdout
    (project.root / "out").symlink_to(project.root / "out")
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\noutputs_dir = "out"\n')
    for command in (["-r"], ["status"]):
        result = project.run(*command)
        assert result.returncode == 2 and "mlp.config:3: outputs_dir:" in result.output and "loops" in result.output, result.output
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\n')
    (project.models / "l.py").symlink_to(project.models / "l.py")
    project.queue(["l.py"], test=True)
    result = project.run()
    assert result.returncode == 2 and "models_test.config:5: entry 'l.py':" in result.output and "loops" in result.output, result.output
    os.remove(project.models / "a.py")
    os.mkfifo(project.models / "a.py")
    project.queue(["a.py"], test=True)
    result = project.run()
    assert result.returncode == 2 and "a.py is a FIFO in" in result.output and "did you mean" not in result.output, result.output
    bad = tmp_path / os.fsdecode(b"bad\xff")
    bad.mkdir()
    (bad / "models").mkdir()
    (bad / "mlp.config").write_text('[MLP]\nmodels_dir = "models"\n')
    result = subprocess.run([sys.executable, "-m", "mlpipeline", "-C", str(bad), "-r"], env=project._env(None), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "is not UTF-8 text" in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_what_the_command_line_and_the_queue_name_that_is_not_there_is_an_error(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v\\u2028x")'))
    project.queue(["a.py:v1"])
    project.queue(["a.py:v1"], test=True)
    for command in ([], ["-r"]):
        result = project.run(*command, "--only", "a.py:nov")
        assert result.returncode == 2 and "--only: a.py has no version 'nov' (its versions: v1)" in result.output, result.output
    project.script("a.py", "x = 1\0\n", prelude=False)
    result = project.run()
    assert result.returncode == 1 and "a.py: syntax error: source code string cannot contain null bytes" in result.output
    assert "None" not in result.output


@pytest.mark.parametrize(
    "text, said",
    [
        ('[MLP]\nmodels_dir = "mod', "mlp.config:2: not valid TOML: Unterminated string"),
        ('[[MLP]]\nmodels_dir = "models"\n', "mlp.config:1: 'MLP' must be a table, [MLP]"),
        ("\ufeff[MLP]\nmodels_dir = 'nowhere'\n", "mlp.config:2: models_dir 'nowhere' is not a folder"),  # the BOM is no error
    ],
)
def test_toml_slips_are_named_at_their_line(project, text, said):
    project.write("mlp.config", text)
    result = project.run("status")
    assert result.returncode == 2 and said in result.output, result.output


def test_a_bad_file_a_config_version_reads_is_the_one_named(project):
    pytest.importorskip("hydra")
    pytest.importorskip("gin")
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "config-files", "models")
    import shutil

    shutil.rmtree(project.models)
    shutil.copytree(examples, project.models, ignore=shutil.ignore_patterns("outputs"))
    project.queue(["line.py", "scaled.py"], test=True)
    with open(project.models / "conf" / "model" / "flat.yaml", "ab") as handle:
        handle.write(b'x: "\xff"\n')
    with open(project.models / "gin" / "base.gin", "ab") as handle:
        handle.write(b"# \xff\n")
    result = project.run("--only", "line.py", timeout=180)  # test mode stops at a script's first failure
    assert result.returncode == 1
    assert "conf/config.yaml: model/flat.yaml, which its defaults list names: it is not UTF-8 text (byte" in result.output, result.output
    result = project.run("--only", "scaled.py", timeout=180)
    assert result.returncode == 1 and "base.gin is not UTF-8 text" in result.output, result.output
    os.remove(project.models / "conf" / "model" / "flat.yaml")
    os.mkfifo(project.models / "conf" / "model" / "flat.yaml")
    result = project.run("--only", "line.py", timeout=180)
    assert result.returncode == 1 and "flat.yaml is no regular file" in result.output, result.output


def test_plot_draws_any_metric_or_version_name_and_says_why_it_draws_nothing(project):
    pytest.importorskip("matplotlib")
    project.script(
        "a.py",
        """
        from mlpipeline.helper import DataLoader, Model
        from mlpipeline.utils import Versions

        class Data(DataLoader):
            def get_train_input(self, **kwargs): return [1, 2]
            def get_test_input(self, **kwargs): return [1]
            def get_train_sample_count(self): return 2
            def get_test_sample_count(self): return 1

        class Reporting(Model):
            def train_model(self, input_fn, steps):
                for step in range(steps):
                    self.report(step=step + 1, total=steps, **{"$\\\\frac$": 1.0 / (step + 1), "nan_only": float("nan")})

            def evaluate_model(self, input_fn, steps):
                return {}

        versions = Versions(learning_rate=0.1, dataloader=Data(), batch_size=1, epoc_count=2)
        versions.addV("a$x^{$")
        versions.addV("b")
        MODEL = Reporting(versions)
        """,
        prelude=False,
    )
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    drawn = project.run("plot", "$\\frac$", "-o", str(project.root / "tex.svg"))  # TeX that does not parse, twice
    assert drawn.returncode == 0 and "Traceback" not in drawn.output and "Warning" not in drawn.output, drawn.output
    assert "a$x^{$" in (project.root / "tex.svg").read_text()
    nothing = project.run("plot", "nan_only", "-o", str(project.root / "nan.png"))
    assert nothing.returncode == 1 and "every value of 'nan_only' the runs reported is NaN, infinite or no number" in nothing.output


def test_cancel_asks_once_for_a_name_given_twice_and_says_what_finished(project):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    assert project.run("-r", "--only", "a.py:v1").returncode == 0
    said = project.run("cancel", "a.py:v1", "a.py:v1", "a.py:v2")
    assert said.returncode == 0, said.output
    requests = [json.loads(line) for line in (project.outputs / "control.jsonl").read_text().splitlines()]
    assert [(request["script"], request["version"]) for request in requests] == [("a.py", "v1"), ("a.py", "v2")]
    assert "cancel a.py:v1: finished in an earlier run (-u skips it): a.py:v1" in said.output
    assert "cancel a.py:v2: queued: a.py:v2" in said.output


def test_migrate_config_takes_any_script_name_and_names_the_ini_line_of_a_key_set_twice(project):
    project.write("mlp.config", "[MLP]\nmodels_dir = models\n")
    project.write("models.config", '[MLP]\nuse_blacklist: False\n[WHITELISTED_MODELS]\na.py\nmy model.py\nq"x.py\n')
    result = project.run("migrate-config")
    assert result.returncode == 0, result.output
    assert 'scripts = [\n  "a.py",\n  "my model.py",\n  "q\\"x.py",\n]' in (project.root / "models.config").read_text()
    (project.root / "mlp.config.bak").unlink()
    project.write("mlp.config", "[MLP]\nmodels_dir = models\nmodels_dir = models\n")
    result = project.run("migrate-config")
    assert result.returncode == 2 and "mlp.config:3: [MLP] sets models_dir twice (lines 2 and 3)" in result.output, result.output
    empty = project.root / "empty"
    empty.mkdir()
    result = project.run("migrate-config", "-C", str(empty))
    assert result.returncode == 2 and "no config file to migrate here" in result.output
    result = project.run("status", "-C", "")
    assert result.returncode == 2 and "-C names no folder" in result.output


@pytest.mark.parametrize(
    "setting, said",
    [
        ('gpus = ["0,1", "1"]', "mlp.config:3: gpus: '0,1' is no GPU id"),
        ('gpus = [" 0 "]', "mlp.config:3: gpus: ' 0 ' is no GPU id"),
        ('gpus = [1, "a"]', "mlp.config:3: gpus: 'a' is no GPU id"),
        ('gpus = ["1", 1]', "mlp.config:3: gpus lists a GPU twice"),
        ('gpus = ["' + "1" * 5000 + '"]', "mlp.config:3: gpus: '1111"),
        ('gpus = ["GPU-8f2b1c3e-aaaa-bbbb-cccc-0123456789ab", "MIG-GPU-8f2b/1/0"]', None),
        ('[EARLY_STOPPING]\nmetric = "\\u001b[31mloss"\ngrace_steps = 1', "mlp.config:4: metric '\\x1b[31mloss' holds a control character"),
    ],
)
def test_settings_that_would_hand_out_a_gpu_twice_or_name_a_metric_with_a_control_code_are_refused(project, setting, said):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\n{setting}\n')
    result = project.run("status")
    if said is None:
        assert result.returncode == 0, result.output
    else:
        assert result.returncode == 2 and said in result.output, result.output


def test_a_closed_standard_input_costs_nothing(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    project.queue(["a.py"], test=True)
    for command in ([], ["status"], ["-r"]):
        # A closed descriptor 0 was the number the next pipe got: a version's lifeline, which
        # its child then read as its daemon gone.
        result = subprocess.run(
            project.command(*command), env=project._env(None), capture_output=True, text=True, timeout=120,
            preexec_fn=lambda: os.close(0),
        )
        assert result.returncode == 0 and "killed" not in result.stdout + result.stderr, (command, result.stdout + result.stderr)
    assert [row["status"] for row in project.results()] == ["finished"]


def test_a_version_name_of_bytes_that_are_not_utf8_is_refused_before_it_runs(project):
    project.script("a.py", versions_code('versions.addV("name" + os.fsdecode(b"\\xff"))', 'versions.addV("ok")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output  # as for every refused name: the exit code is the others' (script-api.md)
    assert "a.py: version 'name\\\\udcff' is refused: its name holds a byte that is not UTF-8 (0xFF at character 5)" in result.output
    assert [(row["version"], row["status"]) for row in project.results()] == [("ok", "finished")]
    assert "is refused" in project.run("-r", "-u").output  # refused again, never claimed: nothing recorded of it
    assert [row["version"] for row in project.results()] == ["ok"]


def test_a_name_or_value_holding_a_bidirectional_control_cannot_read_as_another(project):
    # "best\u202e1v" shows as "bestv1" on a terminal: another version's name.
    project.script(
        "a.py", versions_code('versions.addV("best\\u202e1v")', 'versions.addV("ok", note="x\\u2067y")', 'versions.addV("ok2", note="z")')
    )
    project.queue(["a.py"])
    result = project.run("-r")
    assert "a.py: version 'best\\u202e1v' is refused: its name holds a bidirectional control" in result.output
    assert "(U+202E at character 5)" in result.output
    assert sorted((row["version"], row["status"]) for row in project.results()) == [("ok", "finished"), ("ok2", "finished")]
    compared = project.run("compare")
    assert "x\\u2067y" in compared.stdout and "\u2067" not in compared.stdout
    assert "\u2067" not in project.outputs.joinpath("results.jsonl").read_text(encoding="utf-8")


def test_json_we_write_holds_no_raw_c1_control_or_line_separator():
    from mlpipeline.records.files import json_encoder, json_text

    for encode in (lambda value: json_text(value, ensure_ascii=False), json_encoder(ensure_ascii=False)):
        text = encode({"k\u2029": "x\x9b31m\u2028y é", "s": os.fsdecode(b"a\xff") + "\x85"})
        assert text == '{"k\\u2029": "x\\u009b31m\\u2028y é", "s": "a\\\\udcff\\u0085"}'
        assert json.loads(text)["k\u2029"] == "x\x9b31m\u2028y é"
        # A right-to-left override would make `cat results.jsonl` show the line reordered.
        assert encode({"v": "evil\u202egpj.py"}) == '{"v": "evil\\u202egpj.py"}'


def test_an_exit_function_that_hangs_is_cut_short_once_the_result_is_in():
    code = (
        "import atexit, time\n"
        "import mlpipeline.child.keeper as keeper\n"
        "keeper.EXIT_FUNCTIONS_S = 0.5\n"
        "def retrying():\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(1)\n"
        "        except Exception:\n"  # a tracker's flush retries so: the interruption is no Exception
        "            pass\n"
        "atexit.register(print, 'the last one runs')\n"
        "atexit.register(retrying)\n"
        "atexit.register(time.sleep, 300)\n"
        "keeper._run_exit_functions(0)\n"
        "print('done')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["the last one runs", "done"], result.stdout + result.stderr
    said = "mlpipeline: the script's exit functions (atexit) ran past 0.5 s; cut short"
    assert result.stderr.splitlines() == [said, said], result.stderr
    # One that swallows even that: the worker ends without it, with the exit code it had.
    swallowing = code.replace("except Exception:", "except BaseException:").replace("EXIT_FUNCTIONS_S = 0.5", "EXIT_FUNCTIONS_S = 0.5; keeper.EXIT_FUNCTIONS_GRACE_S = 0.5")
    result = subprocess.run([sys.executable, "-c", swallowing.replace("_run_exit_functions(0)", "_run_exit_functions(3)")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "done" not in result.stdout, result.stdout + result.stderr


def test_a_config_sweep_names_each_version_apart_and_a_gin_include_is_named(project):
    pytest.importorskip("hydra")
    pytest.importorskip("gin")
    project.write("models/sw/cfg.yaml", "batch_size: 1\nepoc_count: 1\na: 0\n")
    project.write("models/g/top.gin", '# a\n# b\ninclude "sub/inc.txt"\nf.w = 3\n')
    project.write("models/g/sub/inc.txt", "f.z = [1,\n")
    project.script(
        "odd.py",
        """
        import gin
        from mlpipeline.helper import Model, SplitDataLoader
        from mlpipeline.utils import Versions

        @gin.configurable
        def f(w=1, z=0):
            return w

        class Nothing(Model):
            def train_model(self, input_fn, steps):
                pass

            def evaluate_model(self, input_fn, steps):
                return {}

        versions = Versions(dataloader=SplitDataLoader([0], [0]))
        versions.add_config_files("sw/cfg.yaml", overrides=["+tag='c:d','c_d'"])
        versions.add_config_files("sw/cfg.yaml", overrides=["a=1,1,2"])
        versions.add_config_files("g/top.gin")
        MODEL = Nothing(versions)
        """,
        prelude=False,
    )
    project.queue(["odd.py"])
    result = project.run("-r", timeout=180)
    assert result.returncode == 1, result.output
    rows = {row["version"]: row for row in project.results()}
    assert {name: row["status"] for name, row in rows.items()} == {
        "+tag='c_d'": "finished", "+tag='c_d'#2": "finished", "a=1": "finished", "a=2": "finished", "top": "failed",
    }
    assert rows["+tag='c_d'#2"]["parameters"]["tag"] == "c_d" and rows["+tag='c_d'"]["parameters"]["tag"] == "c:d"
    assert "g/top.gin: sub/inc.txt, which it includes: line 2: EOF in multi-line statement" in rows["top"]["reason"]


def test_text_and_json_helpers_keep_what_they_cannot_show_as_text():
    from pathlib import Path

    from mlpipeline.child.worker import RESULT_BUDGET, fitted_result
    from mlpipeline.records.files import json_encoder, json_text
    from mlpipeline.records.text import plain_lines, plain_text

    # An object printing a lone surrogate, through default=str: escaped, not the record lost as null.
    for encode in (lambda value: json_text(value, ensure_ascii=False), json_encoder(ensure_ascii=False)):
        assert json.loads(encode({"p": Path("/a/\udcff.png")})) == {"p": "/a/\\udcff.png"}
        assert json.loads(encode({"loss": float("nan"), "r": "a\u2028b"})) == {"loss": "nan", "r": "a\u2028b"}
        assert "\u2028" not in encode({"loss": float("nan"), "r": "a\u2028b"})
    # Escape codes out of printed lines, 8-bit too, on both paths; an address out on both.
    assert plain_lines(["<f at 0x7fabcdef12>\x1b[0m", "x\x9b31my", "é"]) == ["<f>", "xy", "é"]
    assert plain_lines(["<f at 0x7fabcdef12>", "plain"]) == ["<f>", "plain"]
    # An escape sequence never ended takes only itself, not the rest of the line.
    assert plain_text("loss 0.5 \x1b] more") == "loss 0.5  more"
    assert plain_text("a\x1b]0;title\x07b") == "ab"
    # 60,000 parameters past the budget: a part left out, said once, the rest kept.
    result = {"ok": True, "parameters": {f"p{index:06d}": "x" * 30 for index in range(60000)}}
    text = fitted_result(result)
    assert len(text) <= RESULT_BUDGET
    kept = json.loads(text)["parameters"]
    assert 0 < len(kept) < 60000 and all(value == "x" * 30 for value in kept.values())


REORDERING = """
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Reorders(Model):
    def train_model(self, input_fn, steps):
        print("loss 0.5 \\u202e3.0 ssol")  # shows as "loss 0.5 loss 0.3" where obeyed
        raise RuntimeError("\\x1b[2J\\x1b[31mboom \\u202eeulav")

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([1], [1]), batch_size=1, epoc_count=1)
versions.addV("v")
MODEL = Reorders(versions)
"""


def test_no_file_a_person_reads_obeys_an_escape_code_or_a_bidirectional_control(project):
    # The log kept U+202E as it was, and output-<host>'s reason dropped the escape codes the
    # docs say it shows.
    project.script("r.py", REORDERING, prelude=False)
    project.queue(["r.py"])
    result = project.run("-r")
    assert result.returncode == 1, result.output
    log, output = project.log_text(), project.output_text()
    for text in (log, output):
        assert "\u202e" not in text and "\x1b" not in text
    assert "loss 0.5 \\u202e3.0 ssol" in log
    assert "reason:         r.py:v failed in train_model: RuntimeError: \\x1b[2J\\x1b[31mboom \\u202eeulav" in output
