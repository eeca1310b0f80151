"""The package as a user installs it: pyproject metadata, no extras, the oldest and newest
Python this machine has; shell completion generated from the parsers."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Project

def installed_pythons():
    """The Pythons 3.9 to 3.13 this machine can run: on PATH, or in pyenv's versions."""
    found = []
    for minor in range(9, 14):
        name = f"python3.{minor}"
        candidates = [shutil.which(name)] + sorted(str(p) for p in Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/{name}"))
        for candidate in candidates:
            if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
                found.append(candidate)
                break
    return found or [sys.executable]


def completion_candidates(script: str, words: str) -> list:
    """What bash's completion offers after ``words`` (the last word is the one completed)."""
    typed = words.split(" ")
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(word) for word in typed)}); COMP_CWORD={len(typed) - 1}\n"
        '_mlpipeline; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return sorted(result.stdout.split())


def test_shell_completion_offers_commands_and_each_commands_options(project):
    bash = project.run("completion", "bash")
    assert bash.returncode == 0, bash.output
    assert completion_candidates(bash.stdout, "mlpipeline c") == ["cancel", "compare", "completion"]
    assert completion_candidates(bash.stdout, "mlpipeline status --") == ["--help", "--json"]
    assert "--pdb" in completion_candidates(bash.stdout, "mlpipeline --")
    assert "--markdown" in completion_candidates(bash.stdout, "mlpipeline -C . compare --")
    zsh = project.run("completion", "zsh")
    assert zsh.stdout.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    assert bash.stdout.split("\n", 1)[1] in zsh.stdout  # the same function, through zsh's bash compatibility
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-c", zsh.stdout], check=True)
    assert project.run("completion", "fish").returncode == 2



def test_every_command_of_the_table_is_in_help_and_answers_its_own_help(project):
    from mlpipeline.commands import COMMANDS

    listed = project.run("--help")
    assert listed.returncode == 0, listed.output
    for name, command in COMMANDS.items():
        assert f"mlpipeline {name}" in listed.stdout and command.summary in listed.stdout
        own = project.run(name, "--help")
        assert own.returncode == 0 and own.stdout.startswith(f"usage: mlpipeline {name}"), own.output
    # A command that needs no project takes -C as every other does, and ignores it.
    assert project.run("-C", "/nonexistent", "completion", "bash").returncode == 0


@pytest.mark.slow
def test_pip_install_without_extras_on_the_oldest_and_newest_python(tmp_path):
    found = installed_pythons()
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "mlpipeline", source / "mlpipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for python in sorted({found[0], found[-1]}):
        venv = tmp_path / Path(python).name
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True, text=True)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        version = subprocess.run([str(venv / "bin" / "mlpipeline"), "--version"], capture_output=True, text=True, env=env)
        assert version.stdout.strip().startswith("mlpipeline "), version.stdout + version.stderr
        typed = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import importlib.resources as r, mlpipeline, sys; print(r.files('mlpipeline').joinpath('py.typed').is_file(),"
             " 'torch' in sys.modules, mlpipeline.__file__)"],
            capture_output=True, text=True, env=env, cwd=str(tmp_path),
        )  # fmt: skip
        assert typed.stdout.startswith("True False " + str(venv)), typed.stdout + typed.stderr
        project = Project(tmp_path / f"project {Path(python).name}")
        project.script("a.py", _SCRIPT, prelude=False)
        project.queue(["a.py"], test=True)
        run = subprocess.run([str(venv / "bin" / "mlpipeline"), "-C", str(project.root)], capture_output=True, text=True, env=env)
        assert run.returncode == 0 and "the one version passed" in run.stdout, f"{python}: {run.stdout}{run.stderr}"


_SCRIPT = '''
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import MetricContainer, Versions


class Tiny(Model):
    def train_model(self, data, steps):
        metrics = MetricContainer(["loss"])
        metrics.loss.update(0.5)
        self.report(step=1, total=1, loss=metrics.loss.avg())

    def evaluate_model(self, data, steps):
        return {"n": len(data)}


versions = Versions(0.1, SplitDataLoader([1, 2], [3]), 1, 1)
versions.addV("v")
MODEL = Tiny(versions)
'''
