"""GPUs as the host tells of them, without a real GPU: an nvidia-smi (a script first on PATH)
that answers garbage, bytes that are no text, text that is no listing, "[N/A]" for memory, or
nothing at all for minutes; a CUDA_VISIBLE_DEVICES that CUDA would cut short; and version
parameters asking for GPUs wrongly. Each is said in words that name its source, versions run
(with the GPUs that can be trusted, or none), and never a traceback."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import REPO, Project, versions_code

VERSIONS = ('versions.addV("a", model_dir_suffix="a")', 'versions.addV("b", model_dir_suffix="b")')


def fake_nvidia_smi(folder: Path, listing: str, usage: str = "", exit_code: int = 0) -> dict:
    """An nvidia-smi that prints ``listing`` (shell printf text) for the GPUs' indexes and exits
    ``exit_code``, and ``usage`` (a shell command) for the memory query; PATH with it first."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  --query-gpu=index) printf '{listing}'; exit {exit_code} ;;\n"
        f"  --query-gpu=index,*) {usage or 'exit 0'} ;;\n"
        "  *) exit 0 ;;\n"
        "esac\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ""}


def queue(project: Project, *lines: str) -> None:
    project.script("a.py", versions_code(*(lines or VERSIONS)))
    project.queue(["a.py"])
    project.queue(["a.py"], test=True)


@pytest.mark.parametrize(
    "listing, exit_code, said",
    [
        (r"0\n\377\376\200\n1\n", 0, "nvidia-smi did not list GPUs (exit 0: 0\n\ufffd\ufffd\ufffd\n1)"),
        ("Failed to initialize NVML: Driver/library version mismatch\\n", 0, "exit 0: Failed to initialize NVML: Driver/library version mismatch"),
        ("", 9, "nvidia-smi did not list GPUs (exit 9: no output)"),
    ],
    ids=["bytes that are no text", "an error on stdout", "a failure"],
)
def test_an_nvidia_smi_that_lists_no_gpus_is_said_and_versions_run_without_one(project: Project, tmp_path: Path, listing: str, exit_code: int, said: str) -> None:
    queue(project)
    env = fake_nvidia_smi(tmp_path / "bin", listing, exit_code=exit_code)
    del env["CUDA_VISIBLE_DEVICES"]
    result = project.run("-r", env=env)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert said.replace("\n", "\\n") in project.log_text(), project.log_text()
    assert "versions run with no GPU" in result.output
    assert [call["cuda"] for call in project.calls("train")] == ["", ""]


@pytest.mark.parametrize("visible, handed", [("0,0", "0"), ("0,-1,1", "0"), ("1,abc,2", "1")])
def test_a_cuda_visible_devices_that_cuda_cuts_short_hands_out_only_what_cuda_sees(project: Project, visible: str, handed: str) -> None:
    queue(project)
    result = project.run("-r", env={"CUDA_VISIBLE_DEVICES": visible})
    assert result.returncode == 0, result.output
    assert f'CUDA_VISIBLE_DEVICES="{visible}"' in result.output and "CUDA sees no GPU from there on" in result.output
    assert [call["cuda"] for call in project.calls("train")] == [handed, handed]


def test_gpu_memory_of_na_is_not_known_rather_than_none(project: Project, tmp_path: Path) -> None:
    # "[N/A]" for a GPU's memory (some boards, MIG) was read as 0 bytes: a version stating
    # gpu_memory then failed for good ("the largest here have 0.0 GiB").
    queue(project, 'versions.addV("a", gpu_memory="10GiB")')
    usage = "echo '0, GPU-a, [N/A], [N/A], [N/A]'"
    env = fake_nvidia_smi(tmp_path / "bin", r"0\n", usage)
    del env["CUDA_VISIBLE_DEVICES"]
    result = project.run("-r", env=env)
    assert result.returncode == 0, result.output
    assert [call["cuda"] for call in project.calls("train")] == ["0"]


def test_an_nvidia_smi_that_hangs_is_given_up_on_and_said(project: Project, tmp_path: Path) -> None:
    queue(project)
    env = fake_nvidia_smi(tmp_path / "bin", r"0\n1\n", "sleep 60")
    del env["CUDA_VISIBLE_DEVICES"]
    result = project.run("-r", "--workers", "2", env=env, timeout=120)
    assert result.returncode == 0, result.output
    assert "nvidia-smi did not answer in 10 s; GPUs are handed out by count from now on" in result.output
    assert sorted(call["cuda"] for call in project.calls("train")) == ["0", "1"]


def test_gpu_parameters_that_cannot_be_are_refused_by_test_mode_and_fail_their_version_alone(project: Project) -> None:
    huge = '"' + "9" * 400 + 'GB"'
    queue(project, f'versions.addV("huge", gpu_memory={huge}, model_dir_suffix="h")', 'versions.addV("nan", gpus=float("nan"), model_dir_suffix="n")', 'versions.addV("fine", model_dir_suffix="f")')
    tested = project.run()
    assert tested.returncode != 0 and "Traceback" not in tested.output, tested.output
    assert "a.py:huge: gpu_memory '999999999" in tested.output and "is more than any GPU has" in tested.output
    assert "a.py:nan: gpus must be 0, a fraction below 1, or a whole number of GPUs, not 'nan'" in tested.output
    assert not project.calls("train")  # refused before any training
    result = project.run("-r", env={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.returncode == 1 and "Traceback" not in result.output, result.output
    rows = {row["version"]: row for row in project.results()}
    assert rows["fine"]["status"] == "finished"
    assert rows["huge"]["status"] == "failed" and "is more than any GPU has" in rows["huge"]["reason"]
    assert rows["nan"]["status"] == "failed" and "not 'nan'" in rows["nan"]["reason"]


def test_an_nvml_that_hangs_is_given_up_on_and_versions_and_their_output_go_on(project: Project, tmp_path: Path) -> None:
    # A driver call that never returns once held the daemon for good (SIGTERM did nothing) and
    # every version's output behind it. Here pynvml is a stand-in whose every call hangs.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text("import time\nclass NVMLError(Exception):\n    pass\ndef nvmlInit():\n    time.sleep(600)\n")
    queue(project, 'versions.addV("a", print_lines=3, model_dir_suffix="a")')
    result = project.run("-r", env={"CUDA_VISIBLE_DEVICES": "0", "PYTHONPATH": f"{fake}{os.pathsep}{REPO}"}, timeout=120)
    assert result.returncode == 0, result.output
    assert "NVML did not answer in 10 s; GPUs are handed out by count from now on" in result.output
    assert [call["cuda"] for call in project.calls("train")] == ["0"]
    assert project.log_text().count("hello from a") == 3
