"""Benchmark, on a machine with an NVIDIA GPU and CUDA torch: versions packed onto GPU 0 by
their gpu_memory, beside another process holding most of it, against one at a time; what
reading the GPUs costs at each dispatch; a CUDA version's dispatch with a preload.

A holder process takes 100 GiB of GPU 0 (70% of it on a smaller GPU), as another user's job
would. Then 8 versions, each stating gpu_memory = "2GiB" and training a small model on the
GPU for about 2 s, run with workers 8 (packed: several at once on the one GPU, in the memory
the holder leaves) and with workers 1; gpu_busy_memory is raised to 0.95 so that the GPU is
not refused for the holder, only packed around it. Printed: both times and their ratio, each
version's peak GPU memory, how long GpuUsage.read() takes (median of 200), and, with
preload = ["torch"], 20 one-step CUDA versions' time a version.
Run (from the checkout, with PYTHONPATH=.): python3 bench/gpu_packing.py
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402

SCRIPT = """
import time
import torch
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions


class Small(Model):
    def train_model(self, input_fn, steps):
        model = torch.nn.Linear(256, 256).cuda()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        block = torch.empty(int(1.5 * 2**30), dtype=torch.uint8, device="cuda")  # what it uses
        block.fill_(1)
        until = time.time() + %(seconds)r
        while True:  # one step at least
            loss = model(torch.randn(512, 256, device="cuda")).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if time.time() >= until:
                break
        torch.cuda.synchronize()
        self.report(step=steps, total=steps, loss=float(loss))

    def evaluate_model(self, input_fn, steps):
        return {}


versions = Versions(dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1)
for index in range(%(count)d):
    versions.addV("v%%d" %% index, gpu_memory="2GiB", model_dir_suffix="v%%d" %% index)
MODEL = Small(versions)
"""

HOLDER = """
import sys, time, torch
total = torch.cuda.get_device_properties(0).total_memory
size = min(100 * 2**30, int(total * 0.7))
block = torch.empty(size, dtype=torch.uint8, device="cuda"); block.fill_(1); torch.cuda.synchronize()
print(size, total, flush=True)
time.sleep(3600)
"""


def run_queue(count: int, seconds: float, extra: str) -> tuple:
    root = make_project({"small.py": SCRIPT % {"seconds": seconds, "count": count}}, ["small.py"], extra)
    started = time.perf_counter()
    subprocess.run(mlpipeline(root, "-r"), env=environment(), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    took = time.perf_counter() - started
    rows = [json.loads(line) for line in (root / "models" / "outputs" / "results.jsonl").read_text().splitlines()]
    return took, rows


def main() -> None:
    from mlpipeline.executors.gpu_usage import GpuUsage

    print(f"machine: {machine()}")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    assert holder.stdout is not None
    held, total = (int(word) for word in holder.stdout.readline().split())
    print(f"another process holds {held / 2**30:.1f} GiB of GPU 0's {total / 2**30:.1f} GiB")
    try:
        usage = GpuUsage()
        reads = []
        for _ in range(200):
            began = time.perf_counter()
            readings = usage.read()
            reads.append(time.perf_counter() - began)
        assert readings is not None, "nothing could read the GPUs (no NVML, no nvidia-smi)"
        print(f"reading the GPUs ({usage.source}): {statistics.median(reads) * 1000:.2f} ms median of 200 (at each dispatch)")
        print(f"GPU 0 as read: {readings['0'].used_bytes / 2**30:.1f} GiB used; processes {readings['0'].processes}")
        mlp = 'gpus = [0]\ngpu_busy_memory = 0.95\npreload = ["torch", "torch._dynamo"]\n'
        packed, rows = run_queue(8, 2.0, f"workers = 8\n{mlp}")
        single, _ = run_queue(8, 2.0, f"workers = 1\n{mlp}")
        print(f"8 versions of about 2 s, gpu_memory 2 GiB each: packed (workers 8) {packed:.1f} s, one at a time {single:.1f} s: {single / packed:.2f}x")
        print("their peak GPU memory (MiB):", sorted(row.get("gpu_peak_memory_mb") for row in rows))
        print("their GPUs' mean utilization (%):", sorted(row.get("gpu_utilization") for row in rows))
        assert all(row["status"] == "finished" for row in rows), [row.get("reason") for row in rows]
        dispatch, _ = run_queue(20, 0.0, f"workers = 1\n{mlp}")
        empty, _ = run_queue(0, 0.0, f"workers = 1\n{mlp}")
        print(f"a one-step CUDA version with preload: {(dispatch - empty) / 20 * 1000:.0f} ms a version ({dispatch:.1f} s for 20, {empty:.1f} s for none)")
    finally:
        holder.kill()


if __name__ == "__main__":
    main()
