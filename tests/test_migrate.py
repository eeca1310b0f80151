"""The original package's INI files: refused with their TOML shown, rewritten by migrate-config."""
from __future__ import annotations

import sys

from conftest import Project, versions_code

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ORIGINAL_MLP = """\
# where the models live
[MLP]
models_dir: models
; a key this mlpipeline does not have
log_level = debug
"""

ORIGINAL_QUEUE = """\
[MLP]
# false: run the whitelist
use_blacklist: False

[BLACKLISTED_MODELS]
#add the names of the model scripts which should be blacklisted

[WHITELISTED_MODELS]
#add the names of the model scripts which should be whitelisted
first.py
# second comes after first
second.py
"""

ORIGINAL_TEST_QUEUE = """\
[MLP]
use_blacklist = yes

[BLACKLISTED_MODELS]
second.py

[WHITELISTED_MODELS]

[NOTES]
owner = me
"""


def original_project(project: Project) -> None:
    project.write("mlp.config", ORIGINAL_MLP)
    project.write("models.config", ORIGINAL_QUEUE)
    project.write("models_test.config", ORIGINAL_TEST_QUEUE)
    for name in ("first.py", "second.py"):
        project.script(name, versions_code('versions.addV("a")', defaults="learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=1"))


def test_an_ini_file_is_refused_with_its_toml_printed(project):
    original_project(project)
    result = project.run("-r")
    assert result.returncode == 2
    assert "mlp.config:3: not valid TOML" in result.output
    assert "original package's INI format" in result.output
    assert 'models_dir = "models"' in result.output  # the equivalent TOML, printed
    assert "mlpipeline migrate-config" in result.output
    assert not project.outputs.exists()


def test_migrate_config_rewrites_each_file_keeping_comments_and_backups(project):
    original_project(project)
    result = project.run("migrate-config")
    assert result.returncode == 0, result.output
    for name, original in (
        ("mlp.config", ORIGINAL_MLP),
        ("models.config", ORIGINAL_QUEUE),
        ("models_test.config", ORIGINAL_TEST_QUEUE),
    ):
        assert (project.root / f"{name}.bak").read_text() == original
        assert f"{name}: rewritten as TOML; the INI file is kept as {name}.bak" in result.output

    mlp_text = (project.root / "mlp.config").read_text()
    mlp = tomllib.loads(mlp_text)
    assert mlp == {"MLP": {"models_dir": "models"}}
    assert "# where the models live" in mlp_text
    assert "# a key this mlpipeline does not have" in mlp_text
    assert '# log_level = "debug"' in mlp_text  # an unknown key is kept, commented out

    queue_text = (project.root / "models.config").read_text()
    queue = tomllib.loads(queue_text)
    assert queue["MLP"] == {"use_blacklist": False}
    assert queue["WHITELISTED_MODELS"] == {"scripts": ["first.py", "second.py"]}
    assert queue["BLACKLISTED_MODELS"] == {"scripts": []}
    for comment in (
        "# false: run the whitelist",
        "#add the names of the model scripts which should be blacklisted",
        "#add the names of the model scripts which should be whitelisted",
        "# second comes after first",
    ):
        assert comment in queue_text
    # The comment between the two scripts stays between them.
    assert queue_text.index('"first.py"') < queue_text.index("# second comes after first") < queue_text.index('"second.py"')

    test_queue_text = (project.root / "models_test.config").read_text()
    test_queue = tomllib.loads(test_queue_text)
    assert "NOTES" not in test_queue and "# [NOTES]" in test_queue_text and '# owner = me' in test_queue_text
    assert test_queue["MLP"] == {"use_blacklist": True}
    assert test_queue["BLACKLISTED_MODELS"] == {"scripts": ["second.py"]}

    # The migrated project runs: the blacklist test queue runs first.py only, the queue both.
    tested = project.run()
    assert tested.returncode == 0, tested.output
    assert "first.py:a" in tested.output and "second.py:a" not in tested.output
    ran = project.run("-r")
    assert ran.returncode == 0, ran.output
    assert [(row["script"], row["status"]) for row in project.results()] == [("first.py", "finished"), ("second.py", "finished")]

    again = project.run("migrate-config")
    assert again.returncode == 0
    assert "mlp.config: already TOML; left as it is" in again.output


def test_migrate_config_changes_nothing_when_a_backup_exists_or_a_file_is_neither(project):
    original_project(project)
    (project.root / "models.config.bak").write_text("mine\n")
    result = project.run("migrate-config")
    assert result.returncode == 2
    assert "models.config.bak: exists already; move it away first" in result.output
    assert (project.root / "mlp.config").read_text() == ORIGINAL_MLP
    assert not (project.root / "mlp.config.bak").exists()

    (project.root / "models.config.bak").unlink()
    project.write("models_test.config", "this is { not a config\n")
    result = project.run("migrate-config")
    assert result.returncode == 2
    assert "models_test.config: is neither TOML nor the original package's INI format; nothing was changed" in result.output
    assert (project.root / "mlp.config").read_text() == ORIGINAL_MLP
