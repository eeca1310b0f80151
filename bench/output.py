"""Benchmark: a version that prints, against the same loop writing to a file.

One version prints N short lines (``step i loss x``, what training loops print) from
train_model. Its loop is timed inside the script, so process starts are not counted, and
compared with the same loop run by a bare ``python`` with stdout redirected to a file, in the
same run. For each case: the loop's time and the ratio, lines a second, the daemon's own CPU
(and per line) and peak memory, and whether every line reached log-<host> whole and in order.
Cases: the local executor without and with a preload; with ``--ray`` also the Ray executor
(a one-node cluster on 127.0.0.1 started here). Target (issue 21): at most 1.5x the file.
Run: python bench/output.py [LINES] [--ray]
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._project import environment, machine, make_project, mlpipeline  # noqa: E402
from bench.memory import peak_mib  # noqa: E402

LOOP = """
import sys, time
def print_lines(count):
    started = time.perf_counter()
    for step in range(count):
        print("step", step, "loss", 1.0 / (step + 1))
    sys.stdout.flush()
    return time.perf_counter() - started
"""

SCRIPT = LOOP + """
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

class Printer(Model):
    def train_model(self, input_fn, steps):
        took = print_lines(%d)
        with open("loop_s", "w") as handle:
            handle.write(repr(took))

    def evaluate_model(self, input_fn, steps):
        return {}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1)
versions.addV("printer")
MODEL = Printer(versions)
"""


def to_a_file(lines: int) -> float:
    """The loop's time in a bare python, stdout to a file (the best of 3)."""
    times = []
    for _ in range(3):
        with tempfile.TemporaryFile() as sink:
            code = LOOP + f"\nimport sys\nsys.stderr.write(repr(print_lines({lines})))"
            # As `python train.py > out.txt` runs it: block-buffered, whatever this shell has set.
            env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
            done = subprocess.run([sys.executable, "-c", code], stdout=sink, stderr=subprocess.PIPE, text=True, check=True, env=env)
        times.append(float(done.stderr))
    return min(times)


def under_mlpipeline(lines: int, mlp_extra: str = "") -> Dict[str, float]:
    root = make_project({"printer.py": SCRIPT % lines}, ["printer.py"], mlp_extra)
    with open("/dev/null", "w") as null:
        daemon = subprocess.Popen(mlpipeline(root, "-r"), env=environment(), cwd=root, stdout=null, stderr=null)
    watched = psutil.Process(daemon.pid)
    cpu = peak = 0.0
    while daemon.poll() is None:
        try:
            times = watched.cpu_times()
            cpu = times.user + times.system
            peak = peak_mib(daemon.pid)
        except (psutil.Error, OSError, RuntimeError):  # RuntimeError: ended between the two looks
            pass
        time.sleep(0.1)
    if daemon.returncode != 0:
        raise RuntimeError(f"mlpipeline -r exited {daemon.returncode}")
    logs = list((root / "models" / "outputs").glob("log-*"))
    return {"loop_s": float((root / "loop_s").read_text()), "daemon_cpu_s": cpu, "peak_mib": peak, "in_order": _check_log(logs[0], lines)}


_LINE = re.compile(r"^\S+ OUT printer\.py:printer step (\d+) loss \S+$")


def _check_log(path: Path, lines: int) -> float:
    """1.0 when the log holds exactly the N lines, whole, prefixed and in order; else 0.0."""
    expected = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if " OUT " not in line:
                continue
            match = _LINE.match(line.rstrip("\n"))
            if match is None or int(match.group(1)) != expected:
                return 0.0
            expected += 1
    return 1.0 if expected == lines else 0.0


def _ray_head() -> Tuple[subprocess.Popen, str]:
    import ray  # noqa: F401 - the extra must be installed

    folder = tempfile.mkdtemp(prefix="mlpipeline-bench-ray-")
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address=127.0.0.1", "--port=0", "--num-cpus=2", "--block", f"--temp-dir={folder}",
               "--include-dashboard=false", "--disable-usage-stats"]
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert head.stdout is not None
    for line in head.stdout:
        found = re.search(r"ray start --address='([^']+)'", line)
        if found:
            return head, found.group(1)
    raise RuntimeError("the Ray head did not start")


def main() -> None:
    arguments = [word for word in sys.argv[1:] if not word.startswith("--")]
    lines = int(arguments[0]) if arguments else 1_000_000
    print(f"machine: {machine()}")
    base = to_a_file(lines)
    print(f"{lines:,} lines to a file: {base:.2f} s ({lines / base:,.0f} lines/s)")
    cases = {"local": "", 'local, preload = ["json"]': 'preload = ["json"]\n'}
    head = None
    if "--ray" in sys.argv:
        head, address = _ray_head()
        cases["ray"] = f'executor = "ray"\nray_address = "{address}"\n'
    try:
        for name, extra in cases.items():
            figures = under_mlpipeline(lines, extra)
            loop = figures["loop_s"]
            print(
                f"{name}: {loop:.2f} s, {loop / base:.2f}x the file ({lines / loop:,.0f} lines/s); daemon CPU "
                f"{figures['daemon_cpu_s']:.2f} s ({figures['daemon_cpu_s'] / lines * 1e6:.2f} us a line), peak "
                f"{figures['peak_mib']:.1f} MiB; log whole and in order: {'yes' if figures['in_order'] else 'NO'}"
            )
    finally:
        if head is not None:
            head.terminate()
            head.wait(30)


if __name__ == "__main__":
    main()
