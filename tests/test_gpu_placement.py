"""GPUs shared with other people's jobs, decided on plain data: a GPU other processes hold is
avoided, versions that state gpu_memory are packed by it. NVML's answers are the GpuLoads
here; tests/test_gpu.py (marked gpu) runs the same on a real GPU. Without one, gpu_memory
packs by what this daemon's versions stated alone, and a wrong gpu_memory fails its version."""
from __future__ import annotations

import os
from typing import Optional, Tuple

import pytest

from conftest import Project, versions_code

from mlpipeline.execution.gpu_placement import GpuLoad, memory_bytes, never_fits, place
from mlpipeline.executors.gpu_usage import GpuUsage

GIB = 2**30


def gpu(
    index: str, total: Optional[int] = 80, others: int = 0, share: float = 0.0, reserved: int = 0, whole: bool = False, ours: int = 0
) -> GpuLoad:
    return GpuLoad(
        index, share_used=share, whole=whole, reserved_bytes=reserved * GIB,
        total_bytes=None if total is None else total * GIB, others_bytes=others * GIB, ours_bytes=ours * GIB,
    )  # fmt: skip


# (GPUs, share asked, memory asked in GiB, granted)
PLACEMENTS = [
    # Nothing known of other processes (no NVML): by this daemon's own count, as before.
    ([gpu("0", None), gpu("1", None)], 1.0, None, ("0",)),
    ([gpu("0", None, whole=True, share=1.0), gpu("1", None)], 1.0, None, ("1",)),
    ([gpu("0", None, share=0.5)], 0.5, None, ("0",)),
    ([gpu("0", None, share=0.75)], 0.5, None, None),
    ([gpu("0"), gpu("1")], 0.0, None, ()),  # no GPU asked: none given
    # Another user's job holds 20 GiB of GPU 0's 80 (over a tenth): GPU 1 is taken.
    ([gpu("0", others=20), gpu("1")], 1.0, None, ("1",)),
    ([gpu("0", others=20), gpu("1", others=30)], 1.0, None, None),  # both busy: it waits
    ([gpu("0", others=8), gpu("1")], 1.0, None, ("0",)),  # 8 of 80 is not over a tenth
    ([gpu("0", others=20)], 0.5, None, None),  # a fraction avoids a busy GPU too
    # Packed by memory: the fullest GPU that fits first, several versions on one GPU.
    ([gpu("0", reserved=30), gpu("1")], 1.0, 20, ("0",)),
    ([gpu("0", reserved=70), gpu("1")], 1.0, 20, ("1",)),
    ([gpu("0", reserved=60), gpu("1", reserved=60)], 1.0, 30, None),
    ([gpu("0", others=5, reserved=60)], 1.0, 20, None),  # 80 - 5 - 60 < 20
    ([gpu("0", whole=True, share=1.0), gpu("1")], 1.0, 1, ("1",)),  # a GPU held whole takes no packing
    ([gpu("0", reserved=10), gpu("1", reserved=5), gpu("2")], 2.0, 10, ("0", "1")),  # two GPUs, 10 GiB on each
    ([gpu("0", None)], 1.0, 10, ("0",)),  # memory unknown: it may go, by count
    # This daemon's half-GPU version that stated no gpu_memory holds 70 GiB: 30 more go elsewhere.
    ([gpu("0", share=0.5, ours=70), gpu("1")], 1.0, 30, ("1",)),
    ([gpu("0", reserved=30, ours=5), gpu("1", reserved=20)], 1.0, 45, ("0",)),  # stated, not yet taken: the statement counts
    # A whole GPU is one no version of this daemon uses, packed or not.
    ([gpu("0", reserved=10), gpu("1")], 1.0, None, ("1",)),
]


@pytest.mark.parametrize("loads, share, memory, granted", PLACEMENTS)
def test_placement(loads: list, share: float, memory: Optional[int], granted: Optional[Tuple[str, ...]]) -> None:
    assert place(loads, share, None if memory is None else memory * GIB, busy_share=0.1) == granted


def test_a_version_that_can_never_fit_says_why() -> None:
    assert never_fits([gpu("0"), gpu("1", total=40)], 1.0, 100 * GIB) == "asks for 100.0 GiB of GPU memory on 1 GPU; the largest here have 80.0 GiB"
    assert never_fits([gpu("0"), gpu("1", total=40)], 2.0, 60 * GIB) is not None
    assert never_fits([gpu("0"), gpu("1", total=40)], 2.0, 30 * GIB) is None
    assert never_fits([gpu("0", None)], 1.0, 100 * GIB) is None  # sizes not known: not judged


@pytest.mark.parametrize(
    "value, expected",
    [("20GB", 20 * 10**9), ("20 GiB", 20 * GIB), ("512MiB", 512 * 2**20), ("1.5g", int(1.5 * GIB)), (4096, 4096), (None, None)],
)
def test_gpu_memory_is_read_as_people_write_it(value: object, expected: Optional[int]) -> None:
    assert memory_bytes(value, "a.py:v") == expected


@pytest.mark.parametrize("value", ["lots", "20 parsecs", "-1GB", 0, True, [20], 0.5, "0.0000001B", float("nan"), float("inf"), "9" * 400 + "GB", "6PB"])
def test_a_gpu_memory_that_is_no_amount_is_refused_naming_the_version(value: object) -> None:
    with pytest.raises(ValueError, match=r"a.py:v: gpu_memory (must be an amount|.* is more than any GPU has)"):
        memory_bytes(value, "a.py:v")


def test_without_nvml_or_a_gpu_nothing_is_read_and_nothing_breaks() -> None:
    usage = GpuUsage()
    readings = usage.read()
    if usage.source == "none":
        assert readings is None
    else:  # a machine with a GPU: what it reads is whole
        assert readings is not None and all(reading.total_bytes > 0 for reading in readings.values())


def test_gpu_memory_packs_versions_and_a_bad_one_fails_alone(project: Project) -> None:
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nworkers = 3\ngpus = [0]\n')
    lines = [f'versions.addV("small{i}", gpu_memory="1GiB", sleep_per_step=0.3, model_dir_suffix="s{i}")' for i in range(3)]
    lines += ['versions.addV("odd", gpu_memory="lots", model_dir_suffix="odd")']
    project.script("a.py", versions_code(*lines, defaults="learning_rate=0.1, dataloader=Data(), batch_size=50, epoc_count=1"))
    project.queue(["a.py"])
    result = project.run("-r", timeout=120)
    assert result.returncode == 1, result.output
    rows = {row["version"]: row for row in project.results()}
    assert rows["odd"]["reason"] == (
        "a.py:odd: gpu_memory must be an amount such as \"20GB\", \"512MiB\" or a number of bytes (at least 1), "
        "in B, KB, MB, GB, TB, KiB, MiB, GiB or TiB (K, M, G and T are the binary ones), not 'lots'"
    )
    assert all(rows[f"small{i}"]["status"] == "finished" and rows[f"small{i}"]["gpus"] == ["0"] for i in range(3))
    # Packed on the one GPU by what they stated: they ran at once (a whole GPU each would have run one at a time).
    spans = {call["version"]: call["t"] for call in project.calls("train")}
    ends = {call["version"]: call["t"] for call in project.calls("trained")}
    assert max(spans[f"small{i}"] for i in range(3)) < min(ends[f"small{i}"] for i in range(3))


def test_a_trees_gpu_memory_and_utilization_are_what_its_processes_held(tmp_path) -> None:
    import subprocess
    import sys

    from mlpipeline.executors.process_tree import ProcessTree

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = ProcessTree(os.getpid())  # this test's process, with the child below it
        tree.sample()
        assert tree.peak_gpu_bytes is None and tree.gpu_utilization is None
        tree.sample_gpus({"0": [(child.pid, 3 * GIB), (1, 5 * GIB)], "1": [(999999, GIB)]}, {"0": 40, "1": 90})
        tree.sample_gpus({"0": [(child.pid, 2 * GIB)], "1": [(child.pid, GIB)]}, {"0": 60, "1": 100})
        assert tree.peak_gpu_bytes == 3 * GIB  # the other process (pid 1) is not the tree's
        assert tree.gpu_utilization == pytest.approx((40 + (60 + 100) / 2) / 2)
    finally:
        child.kill()
        child.wait()
