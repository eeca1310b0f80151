"""SPEC 3: models.config is re-read before every dispatch; a bad edit never stops the daemon,
and a file caught half-written is never taken for the queue."""
import os
import time

import pytest

from conftest import versions_code


def gated(name, gate):
    return f'versions.addV("{name}", wait_for="{gate}")'


def trained(project):
    return [(c["script"], c["version"]) for c in project.calls("train")]


def test_a_script_added_while_the_queue_runs_is_picked_up(project):
    project.script("a.py", versions_code(gated("v1", "go-a")))
    project.script("b.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: trained(project), what="a.py to start")
    project.queue(["a.py", "b.py"])
    (project.root / "go-a").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert trained(project) == [("a.py", "v1"), ("b.py", "v1")]


def test_a_script_removed_while_the_queue_runs_is_not_run(project):
    project.script("a.py", versions_code(gated("v1", "go-a")))
    project.script("b.py", versions_code('versions.addV("v1")'))
    project.script("c.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "b.py", "c.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: trained(project), what="a.py to start")
    project.queue(["a.py", "c.py"])
    (project.root / "go-a").touch()
    daemon.communicate(timeout=60)
    assert daemon.returncode == 0
    assert trained(project) == [("a.py", "v1"), ("c.py", "v1")]


def test_a_half_saved_config_costs_one_warning_and_the_last_good_queue_stays(project):
    project.script("a.py", versions_code(gated("v1", "go-a")))
    project.script("b.py", versions_code(gated("v1", "go-b")))
    project.script("c.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "b.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: trained(project), what="a.py to start")
    # An editor half-way through its save.
    (project.root / "models.config").write_text('[WHITELISTED_MODELS]\nscripts = ["a.py", "b.py",\n')
    (project.root / "go-a").touch()
    project.wait_for(lambda: len(trained(project)) == 2, what="b.py to start on the last good queue")
    # Saved at last, with c.py added: picked up at the next dispatch.
    project.queue(["a.py", "b.py", "c.py"])
    (project.root / "go-b").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert trained(project) == [("a.py", "v1"), ("b.py", "v1"), ("c.py", "v1")]
    warnings = [line for line in project.log_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "models.config:" in warnings[0] and "not valid TOML" in warnings[0]
    assert "last good queue stays in force" in warnings[0]


def test_an_emptied_or_mistyped_config_keeps_the_last_good_queue(project):
    project.script("a.py", versions_code(gated("v1", "go-a")))
    project.script("b.py", versions_code(gated("v1", "go-b")))
    project.script("c.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "b.py", "c.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: trained(project), what="a.py to start")
    (project.root / "models.config").write_text("")
    (project.root / "go-a").touch()
    project.wait_for(lambda: len(trained(project)) == 2, what="b.py to start")
    # Replaced by rename, as editors save, with a wrong type in it.
    replacement = project.root / ".models.config.swp"
    replacement.write_text('[MLP]\nuse_blacklist = "no"\n')
    os.replace(replacement, project.root / "models.config")
    (project.root / "go-b").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert trained(project) == [("a.py", "v1"), ("b.py", "v1"), ("c.py", "v1")]
    log = project.log_text()
    assert "models.config: is empty" in log
    assert "models.config:2: 'use_blacklist' must be true or false" in log


def test_a_half_written_file_that_parses_is_not_taken_for_an_empty_queue(project):
    project.script("a.py", versions_code(gated("v1", "go-a")))
    project.script("b.py", versions_code(gated("v1", "go-b")))
    project.script("secret.py", versions_code('versions.addV("v1")'))
    project.write(
        "models.config",
        '[MLP]\nuse_blacklist = true\n\n[BLACKLISTED_MODELS]\nscripts = ["secret.py"]\n\n[WHITELISTED_MODELS]\nscripts = []\n',
    )
    daemon = project.start("-r")
    project.wait_for(lambda: trained(project), what="a.py to start")
    # Cut short by a save in progress: the table whose list is not written yet.
    (project.root / "models.config").write_text("[MLP]\nuse_blacklist = true\n\n[BLACKLISTED_MODELS]\n")
    (project.root / "go-a").touch()
    project.wait_for(lambda: len(trained(project)) == 2, what="b.py to start on the last good queue")
    (project.root / "models.config").write_text("[WHITELISTED_MODELS]\n")  # and only a header
    (project.root / "go-b").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert trained(project) == [("a.py", "v1"), ("b.py", "v1")]  # secret.py stayed out; nothing ended early
    log = project.log_text()
    assert "models.config:4: [BLACKLISTED_MODELS] has no 'scripts' list" in log
    assert "models.config: has no [WHITELISTED_MODELS] table" not in log  # the header is there...
    assert "models.config:1: [WHITELISTED_MODELS] has no 'scripts' list" in log  # ...its list is not


def test_a_queue_file_is_used_once_it_has_stopped_changing(project):
    project.script("a.py", versions_code(gated("v1", "go-a")))
    project.script("b.py", versions_code('versions.addV("v1")'))
    project.script("c.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "c.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: trained(project), what="a.py to start")
    path = project.root / "models.config"
    # A slow writer: a first part that parses (b.py alone) and, a moment later, the whole file.
    path.write_text('[WHITELISTED_MODELS]\nscripts = ["a.py", "b.py"]\n')
    (project.root / "go-a").touch()
    for _ in range(15):
        time.sleep(0.1)
        os.utime(path)  # still being written
    project.queue(["a.py", "c.py"])
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert trained(project) == [("a.py", "v1"), ("c.py", "v1")]


@pytest.mark.parametrize(
    "slip, text",
    [
        ("an unclosed list", '[MLP]\nuse_blacklist = false\n\n[WHITELISTED_MODELS]\nscripts = [\n  "a.py",\n\n[BLACKLISTED_MODELS]\nscripts = []\n'),
        ("a missing comma", '[MLP]\nuse_blacklist = false\n\n[WHITELISTED_MODELS]\nscripts = ["a.py" "b.py"]\n'),
        ("a duplicate key", '[MLP]\nuse_blacklist = false\nuse_blacklist = true\n\n[WHITELISTED_MODELS]\nscripts = ["a.py"]\n'),
    ],
)
def test_a_toml_slip_is_a_toml_error_and_migrate_config_leaves_it_alone(project, slip, text):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.write("models.config", text)
    result = project.run("-r")
    assert result.returncode == 2, slip
    assert "models.config:" in result.output and "not valid TOML" in result.output
    assert "INI" not in result.output, result.output
    migrated = project.run("migrate-config")
    assert migrated.returncode == 2, migrated.output
    assert "not the original INI format" in migrated.output and "nothing was changed" in migrated.output
    assert (project.root / "models.config").read_text() == text
    assert not (project.root / "models.config.bak").exists()
