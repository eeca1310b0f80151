"""The GPU path on a real NVIDIA GPU (marked gpu: deselected, and said so, where there is none).
bench/gpu_check.sh runs these on a lent GPU machine with CUDA torch. Each starts real daemons
on real projects; a holder process takes GPU memory as another user's job would."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from conftest import REPO, Project

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

TORCH_SCRIPT = '''
import os, time
import torch
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Holder(Model):
    """Takes ``hold_gib`` of its GPU and keeps it ``seconds``; ``oom`` asks for more than there is."""

    def train_model(self, input_fn, steps):
        version = self.current_version
        with open(os.path.join(os.getcwd(), "starts.txt"), "a") as handle:
            handle.write(f"{version['name']} {time.time()} {os.environ.get('CUDA_VISIBLE_DEVICES')}\\n")
        size = int(version.get("hold_gib", 0.5) * 2**30)
        if version.get("oom"):
            size = torch.cuda.get_device_properties(0).total_memory * 2
        block = torch.empty(size, dtype=torch.uint8, device="cuda")
        block.fill_(1)
        torch.cuda.synchronize()
        time.sleep(version.get("seconds", 1.0))
        self.report(step=steps, total=steps, loss=float(block[0].item()))

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1)
VERSIONS
MODEL = Holder(versions)
'''


def gpu_project(project: Project, versions: str, mlp: str = "") -> Project:
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\n{mlp}')
    project.script("hold.py", TORCH_SCRIPT.replace("VERSIONS", versions), prelude=False)
    project.queue(["hold.py"])
    return project


def hold_gpu(fraction: float) -> subprocess.Popen:
    """Another user's job: a process that takes ``fraction`` of GPU 0's memory until killed."""
    code = (
        "import sys, time, torch\n"
        "total = torch.cuda.get_device_properties(0).total_memory\n"
        f"block = torch.empty(int(total * {fraction}), dtype=torch.uint8, device='cuda'); block.fill_(1)\n"
        "torch.cuda.synchronize(); print('holding', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def starts(project: Project) -> dict:
    lines = (project.root / "starts.txt").read_text().splitlines()
    return {line.split()[0]: (float(line.split()[1]), line.split()[2]) for line in lines}


def test_a_gpu_another_process_holds_gets_no_version_until_it_frees_up(project: Project) -> None:
    gpu_project(project, 'versions.addV("v", hold_gib=0.5, seconds=0.5)', "gpus = [0]\n")
    holder = hold_gpu(0.3)  # 30% of the GPU: over the default tenth
    try:
        daemon = project.start("-r")
        project.wait_for(lambda: "held by other processes" in project.log_text(), timeout=60, what="the busy GPU said")
        assert f"pid {holder.pid}" in project.log_text()
        time.sleep(3)
        assert not (project.root / "starts.txt").exists()  # it waited
    finally:
        holder.kill()
        freed = time.time()
    output, _ = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, output
    assert starts(project)["v"][0] > freed - 1


def test_small_versions_pack_on_one_gpu_by_memory_and_record_what_they_held(project: Project) -> None:
    versions = "\n".join(f'versions.addV("v{i}", gpu_memory="2GiB", hold_gib=1, seconds=2, model_dir_suffix="v{i}")' for i in range(8))
    gpu_project(project, versions, "workers = 8\ngpus = [0]\n")
    result = project.run("-r", timeout=300)
    assert result.returncode == 0, result.output
    times = sorted(start for start, _ in starts(project).values())
    assert times[3] - times[0] < 2  # four or more started together on the one GPU
    for row in project.results():
        assert row["gpus"] == ["0"] and row["gpu_peak_memory_mb"] >= 1024, row
        assert row["gpu_utilization"] is not None


def test_a_version_out_of_gpu_memory_is_failed_and_its_gpu_given_back(project: Project) -> None:
    gpu_project(project, 'versions.addV("greedy", oom=True, model_dir_suffix="g")\nversions.addV("after", hold_gib=0.5, model_dir_suffix="a")', "gpus = [0]\n")
    result = project.run("-r", timeout=300)
    assert result.returncode == 1
    rows = {row["version"]: row for row in project.results()}
    assert rows["greedy"]["status"] == "failed" and "CUDA out of memory" in rows["greedy"]["reason"]
    assert rows["after"]["status"] == "finished" and rows["after"]["gpus"] == ["0"]


def test_preload_never_initialises_cuda_and_a_forked_version_uses_its_gpu(project: Project) -> None:
    gpu_project(project, 'versions.addV("v", hold_gib=0.5, seconds=1)', 'gpus = [0]\npreload = ["torch"]\n')
    daemon = project.start("-r")
    project.wait_for(lambda: (project.root / "starts.txt").exists(), timeout=120, what="the version started")
    import pynvml

    pynvml.nvmlInit()
    on_gpu = {process.pid for process in pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0))}
    server = [child.pid for child in psutil.Process(daemon.pid).children() if "preload_server" in " ".join(child.cmdline())]
    output, _ = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, output
    assert server and not set(server) & on_gpu  # the server holds no CUDA context; its fork does
    assert project.results()[0]["gpu_peak_memory_mb"] >= 512


def test_a_preloaded_module_that_initialises_cuda_is_said_and_versions_start_the_plain_way(project: Project) -> None:
    gpu_project(project, 'versions.addV("v", hold_gib=0.5, seconds=0.2)', 'gpus = [0]\npreload = ["cuda_at_import"]\n')
    project.write("models/cuda_at_import.py", "import torch\ntorch.zeros(1, device='cuda')\n")
    result = project.run("-r", timeout=180, env={"PYTHONPATH": f"{REPO}{os.pathsep}{project.models}"})
    assert result.returncode == 0, result.output
    assert "importing cuda_at_import initialised CUDA, which a forked version cannot use" in result.output
    assert project.results()[0]["status"] == "finished"
