"""Names that cannot be carried: a version (or script) name with NUL, a newline, a terminal
escape code. Each is refused where versions are listed, named (escaped) with its script; the
script's other versions go on; nothing of it reaches the child's environment, the journal or
a log line, so none can forge one; and every later run does the same, never a traceback."""
from __future__ import annotations

import re

from conftest import versions_code

FORGED = "2026-01-01T00:00:00.000+00:00 ERROR forged.py:v forged line"
FORGED_VERSION = FORGED.replace(":", "")  # a version name has no ':' (addV refuses one)
# Written into the script's source as Python escapes: the script's own strings hold the bytes.
ODD_VERSIONS = versions_code(
    'versions.addV("nul\\x00name")',
    f'versions.addV("two\\n{FORGED_VERSION}")',
    'versions.addV("esc\\x1b[31mred")',
    'versions.addV("sep\\u2028x")',
    'versions.addV("plain")',
    defaults="learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=1",
)
SHOWN = ["'nul\\x00name'", f"'two\\n{FORGED_VERSION}'", "'esc\\x1b[31mred'", "'sep\\u2028x'"]
"""How the messages show the four names: quoted, escaped as Python writes them."""

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d [A-Z]+ \S+ ")


def no_raw_controls(text: str) -> None:
    assert "Traceback" not in text, text
    for char in ("\x00", "\x1b", "\u2028", "\x85"):
        assert char not in text, f"{char!r} reached the output: {text!r}"


def log_is_whole(project) -> None:
    """Every line of log-<host> is one the daemon began: none was split off by a name."""
    lines = project.log_text().splitlines()
    assert lines
    for line in lines:
        assert LOG_LINE.match(line), f"a line of log-<host> not begun by the daemon: {line!r}"
        assert not line.split(" ", 3)[2].startswith("forged.py"), line


def test_test_mode_names_each_refused_version_and_trains_nothing(project):
    project.script("names.py", ODD_VERSIONS)
    project.queue(["names.py"], test=True)
    result = project.run()
    assert result.returncode == 1, result.output
    no_raw_controls(result.output)
    for shown in SHOWN:
        assert f"names.py: version {shown}" in result.output, result.output
    assert "is refused: its name holds a control character (U+0000 at character 4)" in result.output
    assert "holds a line or paragraph separator (U+2028" in result.output
    assert project.calls("train") == []  # listed before anything trains, as a missing parameter is
    assert not project.outputs.exists()


def test_execution_mode_skips_refused_versions_runs_the_rest_and_every_later_run_too(project):
    project.script("names.py", ODD_VERSIONS)
    project.queue(["names.py"])
    first = project.run("-r")
    assert first.returncode == 0, first.output
    no_raw_controls(first.output)
    assert [call["version"] for call in project.calls("train")] == ["plain"]
    assert {(row["version"], row["status"]) for row in project.results()} == {("plain", "finished")}
    assert {event["version"] for event in project.journal()} == {"plain"}
    log = project.log_text()
    for shown in SHOWN:
        assert f"names.py: version {shown}" in log, log
    assert "(skipped; the script's other versions run)" in log
    no_raw_controls(log)
    log_is_whole(project)

    status = project.run("status")
    assert status.returncode == 0, status.output
    no_raw_controls(status.output)
    assert "names.py: version 'nul\\x00name' is refused" in status.output

    again = project.run("-r", "-u")  # the version the original daemon died on every later run
    assert again.returncode == 0, again.output
    no_raw_controls(again.output)
    assert [call["version"] for call in project.calls("train")] == ["plain"]  # finished: -u skips it
    assert project.log_text().count("names.py: version 'nul\\x00name' is refused") == 2  # said again
    log_is_whole(project)


def test_a_script_whose_file_name_holds_a_newline_is_refused_and_the_others_run(project):
    project.script("good.py", versions_code('versions.addV("v")'))
    project.script(f"bad\n{FORGED}.py", versions_code('versions.addV("v")'))
    project.queue([], blacklist=[])  # every script under models_dir
    result = project.run("-r")
    assert result.returncode == 0, result.output
    no_raw_controls(result.output)
    assert "script 'bad\\n2026-01-01T00:00:00.000+00:00 ERROR forged.py:v" in result.output
    assert "its file name holds a control character (U+000A at character 4)" in result.output
    assert [call["script"] for call in project.calls("train")] == ["good.py"]
    assert {row["script"] for row in project.results()} == {"good.py"}
    log_is_whole(project)
    again = project.run("-r", "-u")
    assert again.returncode == 0 and "Traceback" not in again.output, again.output
    log_is_whole(project)
