"""Benchmark: the CPU one version's child costs without a preload, against a bare interpreter.

A version of bench/many_versions.py's script, sleeping 0 s, runs N times, one after the other, through
the local executor (a keeper process, its forked worker, the script's import and hooks); the
CPU of each child (keeper and worker together, from the kernel's accounting) is printed as a
median and a minimum, beside that of `python -c pass` on the same machine. With --versions V
the script defines V versions, as bench/many_versions.py's does (its `addV` calls are part of
every child's import). To compare two checkouts, run it in each, interleaved:
`PYTHONPATH=<checkout> python bench/child_cost.py` from outside any checkout.
Run: python bench/child_cost.py [N] [--versions V]
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

sys.path.insert(0, os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or str(Path(__file__).resolve().parents[1]))
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from bench.many_versions import SCRIPT  # noqa: E402 - its script, sleeping 0 s
from mlpipeline.executors.local import LocalExecutor  # noqa: E402
from mlpipeline.executors.protocol import RUN_VERSION, ChildRequest  # noqa: E402

def child_cpu(count: int, versions: int) -> List[float]:
    root = Path(tempfile.mkdtemp(prefix="mlpipeline-bench-"))
    (root / "models").mkdir()
    script = root / "models" / "idle.py"
    script.write_text(SCRIPT % (0.0, versions))
    executor = LocalExecutor(root)
    spent = []
    for index in range(count):
        model_dir = root / "model_dirs" / str(index)
        model_dir.mkdir(parents=True)
        request = ChildRequest(
            action=RUN_VERSION, script_path=str(script), script_label="idle.py", version="v00000",
            model_dir=str(model_dir), execution_mode=True, models_dir=str(root / "models"),
        )
        run = executor.submit(request, on_lines=lambda *_: None, on_event=lambda _: None)
        while executor.next_finished(0.5) is None:
            pass
        outcome = run.outcome
        assert outcome is not None and outcome.result and outcome.result.get("ok"), outcome
        spent.append(float(outcome.cpu_s or 0.0))
    return spent


def bare_cpu(count: int) -> List[float]:
    spent = []
    for _ in range(count):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return spent


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    count = int(args[0]) if args else 30
    versions = int(sys.argv[sys.argv.index("--versions") + 1]) if "--versions" in sys.argv else 1
    import mlpipeline

    print(f"mlpipeline from {Path(mlpipeline.__file__).parent}; a script of {versions} version(s), {count} children")
    child = child_cpu(count, versions)
    print(f"a version's child: {statistics.median(child) * 1000:.1f} ms of CPU (median), {min(child) * 1000:.1f} ms (least)")
    bare = bare_cpu(count)
    print(f"python -c pass: {statistics.median(bare) * 1000:.1f} ms (median), {min(bare) * 1000:.1f} ms (least)")


if __name__ == "__main__":
    main()
