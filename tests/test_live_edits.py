"""SPEC 3: models.config is re-read before every dispatch; a bad edit never stops the daemon."""
import os

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
