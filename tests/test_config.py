"""SPEC 3: the TOML files, and every way they can be wrong (exit 2, file, line and key named)."""
from pathlib import Path

import pytest
from conftest import versions_code

from mlpipeline.queue.config import ConfigError, load_project_config, parse_queue_config


def queue(text, models_dir):
    return parse_queue_config(text, "models.config", models_dir)


def test_whitelist_keeps_listed_order_and_version_entries(tmp_path):
    config = queue(
        '[MLP]\nuse_blacklist = false\n[WHITELISTED_MODELS]\nscripts = ["b.py", "a.py:lr_0.1", "sub/c.py"]\n',
        tmp_path,
    )
    assert [(e.script, e.version, e.line) for e in config.whitelist] == [
        ("b.py", None, 4),
        ("a.py", "lr_0.1", 4),
        ("sub/c.py", None, 4),
    ]
    assert not config.use_blacklist


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[MLP]\nuse_blacklist = flase\n", r"models.config:2: not valid TOML"),
        ("[MLP]\nuse_blacklist = 1\n", r"models.config:2: 'use_blacklist' must be true or false, not int 1"),
        ("[WHITELISTED_MODELS]\nscrips = []\n", r"models.config:2: 'scrips' is not a key of \[WHITELISTED_MODELS\]; did you mean 'scripts'\?"),
        ("[WHITELISTED_MODEL]\nscripts = []\n", r"models.config:1: 'WHITELISTED_MODEL' is not a table; did you mean 'WHITELISTED_MODELS'\?"),
        ('[WHITELISTED_MODELS]\nscripts = "a.py"\n', r"models.config:2: 'scripts' must be a list of strings"),
        ("[WHITELISTED_MODELS]\nscripts = [\n  1,\n]\n", r"models.config:2: \[WHITELISTED_MODELS\] scripts holds 1"),
        ('[WHITELISTED_MODELS]\nscripts = [\n  "ok.py",\n  "../escape.py",\n]\n', r"models.config:4: '../escape.py' is outside models_dir"),
        ('[WHITELISTED_MODELS]\nscripts = ["a.py:"]\n', r"models.config:2: 'a.py:' is not an entry"),
    ],
)
def test_queue_errors_name_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        queue(text, tmp_path)


def test_absolute_entry_outside_models_dir_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is outside models_dir"):
        queue('[WHITELISTED_MODELS]\nscripts = ["/etc/passwd"]\n', tmp_path)


def test_original_ini_format_is_recognised(tmp_path):
    with pytest.raises(ConfigError, match="original package.s INI format; mlpipeline reads TOML. The same in TOML:\n\n# models.config: converted"):
        queue("[MLP]\nuse_blacklist=false\n\n[WHITELISTED_MODELS]\nsample_model.py\n", tmp_path)


def write_mlp(tmp_path: Path, text: str) -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "mlp.config").write_text(text)
    return tmp_path


def test_project_config_defaults(tmp_path):
    config = load_project_config(write_mlp(tmp_path, '[MLP]\nmodels_dir = "models"\n'))
    assert config.models_dir == (tmp_path / "models").resolve()
    assert config.outputs_dir == (tmp_path / "models" / "outputs").resolve()
    assert config.on_script_change == "rerun"
    assert config.executor == "local" and config.ray_address is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[MLP]\n", r"mlp.config:1: \[MLP\] has no 'models_dir'"),
        ('[MLP]\nmodels_dir = "nowhere"\n', r"mlp.config:2: models_dir 'nowhere' is not a folder"),
        ("[MLP]\nmodels_dir = 3\n", r"mlp.config:2: 'models_dir' must be a string, not int 3"),
        ('[MLP]\nmodels_dir = "models"\nmodel_dir = "x"\n', r"mlp.config:3: 'model_dir' is not a key of \[MLP\]; did you mean 'models_dir'\?"),
        ('[MLP]\nmodels_dir = "models"\non_script_change = "ignore"\n', r"mlp.config:3: on_script_change must be \"rerun\" or \"keep\""),
        ('[MLP]\nmodels_dir = "models"\non_version_end = "notify-send done"\n', r"mlp.config:3: on_version_end must be a command as a list of strings"),
        ('[MLP]\nmodels_dir = "models"\non_version_end = [""]\n', r"mlp.config:3: on_version_end must be a command"),
        ('models_dir = "models"\n', r"mlp.config:1: 'models_dir' is not a table"),
        ("", r"mlp.config: has no \[MLP\] table"),
        ('[MLP]\nmodels_dir = "models\n', r"mlp.config:2: not valid TOML"),
        ('[MLP]\nmodels_dir = "models"\nexecutor = "kubernetes"\n', r'mlp.config:3: executor must be "local" or "ray" or "slurm", not \'kubernetes\''),
        ('[MLP]\nmodels_dir = "models"\nray_address = " "\n', r"mlp.config:3: ray_address must be a cluster address"),
        ('[MLP]\nmodels_dir = "models"\nray_adress = "x:1"\n', r"mlp.config:3: 'ray_adress' is not a key of \[MLP\]; did you mean 'ray_address'\?"),
        # Taken for the project's folder, an empty models_dir made models.config's entries the culprits.
        ('[MLP]\nmodels_dir = ""\n', r"mlp.config:2: models_dir is empty: name a folder \(\"\.\" for the project's folder itself\)"),
        ('[MLP]\nmodels_dir = "models"\noutputs_dir = " "\n', r"mlp.config:3: outputs_dir is empty: name a folder \(leave the key out"),
        ('[MLP]\nmodels_dir = "models"\noutputs_dir = "mlp.config"\n', r"mlp.config:3: outputs_dir 'mlp.config' is not a folder \(.*mlp.config\); name a folder, or a new one"),
    ],
)
def test_project_config_errors(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_project_config(write_mlp(tmp_path, text))


# -- the same errors through the real command: exit code 2, message on the console -------


def test_an_outputs_dir_that_cannot_be_written_names_its_line(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\noutputs_dir = "/proc/nope"\n')
    project.queue([])
    result = project.run("-r")
    assert result.returncode == 2
    assert "/proc/nope: outputs folder cannot be written (" in result.output and "(outputs_dir, mlp.config:3); nothing was run" in result.output, result.output


def test_missing_mlp_config_exits_2(project):
    (project.root / "mlp.config").unlink()
    result = project.run()
    assert result.returncode == 2
    assert "mlp.config: not found" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("mode", [[], ["-r"]])
def test_missing_queue_file_exits_2(project, mode):
    result = project.run(*mode)
    assert result.returncode == 2
    name = "models.config" if mode else "models_test.config"
    assert f"{name}: not found" in result.output
    assert not project.outputs.exists()


def test_bad_queue_at_start_exits_2_with_line(project):
    project.script("a.py", versions_code('versions.addV("v")'))
    project.write("models.config", '[WHITELISTED_MODELS]\nscripts = [\n  "a.py",\n  ../b.py\n]\n')
    result = project.run("-r")
    assert result.returncode == 2
    assert "models.config:4: not valid TOML" in result.output
    assert project.calls() == []


def test_entry_outside_models_dir_exits_2(project):
    project.queue(["../../escape.py"])
    result = project.run("-r")
    assert result.returncode == 2
    assert "'../../escape.py' is outside models_dir" in result.output


def test_empty_queue_file_at_start_is_an_error(project):
    project.write("models.config", "\n")
    result = project.run("-r")
    assert result.returncode == 2
    assert "models.config: is empty" in result.output


def test_unknown_key_in_mlp_config_exits_2(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nretry = 3\n')
    project.queue([])
    result = project.run("-r")
    assert result.returncode == 2
    assert "mlp.config:3: 'retry' is not a key of [MLP]" in result.output


def test_usage_errors_exit_2(project):
    assert project.run("-u").returncode == 2
    assert project.run("-r", "--retry-failed").returncode == 2
    assert project.run("--no-such-flag").returncode == 2
    missing = project.run()
    assert missing.returncode == 2  # no models_test.config
    result = project.run("-r", "--only", "../x.py")
    assert result.returncode == 2 and "--only: '../x.py' is outside models_dir" in result.output


def test_messages_say_what_is_wrong_in_plain_words(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nzzzz = 1\n')
    result = project.run("-r")
    assert result.returncode == 2 and "'zzzz' is not a key of [MLP]; the keys of [MLP] are: models_dir" in result.output
    a_file = project.write("notes.txt", "x")
    result = project.run("-C", str(a_file))
    assert result.returncode == 2 and "notes.txt: a file, not a folder" in result.output
