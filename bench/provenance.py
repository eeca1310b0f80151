"""Benchmark: what recording the git commit, and the DVC data version, costs each version.

As each version starts in a git work tree, the daemon runs git three times (HEAD, tracked
changes, the script's own status). Measured on a repository of 1,000 tracked files (scripts
and data), clean and with one file changed. In a DVC project it also lists the tracked
dvc.lock and .dvc files (one more git) and reads them: measured with a dvc.lock of 20
stages and 50 .dvc files. Run: python bench/provenance.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import machine  # noqa: E402
from mlpipeline.records.provenance import dvc_state, git_state  # noqa: E402

FILES = 1_000
RUNS = 30


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def median_ms(root: Path, script: Path, what=git_state) -> float:
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        state = what(root, script)
        timings.append(time.perf_counter() - started)
    assert state is not None
    return sorted(timings)[RUNS // 2] * 1000


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mlpipeline-bench-"))
    models = root / "models"
    models.mkdir()
    for index in range(FILES):
        (models / f"model_{index}.py").write_text(f"# model {index}\n" * 20)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=bench", "-c", "user.email=bench@example.org", "commit", "-q", "-m", "bench")
    script = models / "model_0.py"
    clean = median_ms(root, script)
    (models / "model_1.py").write_text("# changed\n")
    dirty = median_ms(root, script)
    print(f"machine: {machine()}")
    print(f"git state of a {FILES:,}-file repository, median of {RUNS}: clean {clean:.1f} ms, one file changed {dirty:.1f} ms")
    (root / ".dvc").mkdir()
    stage = "  s{0}:\n    cmd: python s{0}.py\n    deps:\n    - path: data/in{0}.csv\n      hash: md5\n      md5: {1}\n    outs:\n    - path: data/out{0}\n      hash: md5\n      md5: {1}.dir\n"
    (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n" + "".join(stage.format(i, f"{i:032x}") for i in range(20)))
    (root / "data").mkdir()
    for index in range(50):
        (root / "data" / f"raw{index}.csv.dvc").write_text(f"outs:\n- md5: {index:032x}\n  size: 100\n  hash: md5\n  path: raw{index}.csv\n")
    git(root, "add", "-A")
    data = median_ms(root, root, lambda folder, _: dvc_state(folder, folder))
    print(f"DVC data version (dvc.lock of 20 stages, 50 .dvc files), median of {RUNS}: {data:.1f} ms")


if __name__ == "__main__":
    main()
