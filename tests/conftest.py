"""Real projects in tmp folders, real ``mlpipeline`` processes.

Project folders have spaces and non-ASCII letters in their path, as users' folders do.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]

# The tests' Ray clusters use token authentication, as clusters `ray start` makes where a token
# exists do: the token is in the environment, which the nodes and the daemons inherit. Set
# before anything imports ray, which reads it once.
os.environ.setdefault("RAY_AUTH_MODE", "token")
if os.environ["RAY_AUTH_MODE"] == "token":
    os.environ.setdefault("RAY_AUTH_TOKEN", uuid.uuid4().hex)

# A model script body shared by the tests: it records each hook call in calls.jsonl beside
# the project, keeps a step counter in model_dir as its checkpoint, and misbehaves on request
# through custom version parameters (fail_in, exit_in, exit_code, sleep_per_step, print_lines,
# wait_for, ignore_signals, grandchildren, hold_mb, burn_cpu_s, crash, fail_until_attempt).
MODEL_PRELUDE = '''
import json, os, sys, time
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions, version_parameters, log

WAVE_PRELOADED = "wave" in sys.modules  # the preload tests preload this rarely imported module
CALLS = os.path.join(os.getcwd(), "calls.jsonl")  # children run in the project folder
SCRIPT = os.path.basename(__file__)


def record(**fields):
    fields["script"] = SCRIPT
    with open(CALLS, "a") as handle:
        handle.write(json.dumps(fields) + "\\n")


class Data(DataLoader):
    def __init__(self, n=100):
        self.n = n

    def get_train_input(self, mode="train", **kwargs):
        return list(range(self.n))

    def get_test_input(self, **kwargs):
        return list(range(self.n // 2))

    def get_train_sample_count(self):
        return self.n

    def get_test_sample_count(self):
        return self.n // 2


class Counting(Model):
    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.checkpoint = os.path.join(model_dir, "steps.txt")
        record(hook="pre", version=version["name"], model_dir=model_dir, mode=exec_mode,
               parent=os.getppid(), wave_preloaded=WAVE_PRELOADED)
        self.misbehave("pre")

    def misbehave(self, phase):
        version = self.current_version
        if version.get("fail_in") == phase:
            raise RuntimeError("deliberate failure in " + phase)
        if version.get("exit_in") == phase:
            os._exit(version.get("exit_code", 3))

    def get_trained_step_count(self):
        if os.path.exists(self.checkpoint):
            with open(self.checkpoint) as handle:
                return int(handle.read())
        return None

    def clean_model_dir(self, model_dir):
        record(hook="clean", model_dir=model_dir)
        path = os.path.join(model_dir, "steps.txt")
        if os.path.exists(path):
            os.remove(path)

    def train_model(self, input_fn, steps):
        version = self.current_version
        done = self.get_trained_step_count() or 0
        record(hook="train", version=version["name"], steps=steps, start=done, pid=os.getpid(),
               cuda=os.environ.get("CUDA_VISIBLE_DEVICES"), omp=os.environ.get("OMP_NUM_THREADS"),
               marker=os.environ.get("MLPIPELINE_TEST_MARKER"), run_id=os.environ.get("MLPIPELINE_RUN_ID"),
               t=time.time())
        for _ in range(version.get("print_lines", 0)):
            print("hello from " + version["name"])
        if version.get("ignore_signals"):
            import signal
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for escape in version.get("grandchildren", ()):  # a list of booleans: leave the group?
            import subprocess
            sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=escape)
            record(hook="grandchild", version=version["name"], pid=sleeper.pid)
        if version.get("hold_mb"):
            import subprocess
            code = "import time; b = bytearray(%d * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
            subprocess.run([sys.executable, "-c", code % version["hold_mb"]], check=True)
        busy_until = time.process_time() + version.get("burn_cpu_s", 0)
        while time.process_time() < busy_until:
            pass
        if version.get("fail_until_attempt"):  # counts attempts in model_dir, which retries keep
            counter = os.path.join(self.model_dir, "attempts.txt")
            attempt = (int(open(counter).read()) if os.path.exists(counter) else 0) + 1
            with open(counter, "w") as handle:
                handle.write(str(attempt))
            if attempt < version["fail_until_attempt"]:
                raise RuntimeError("flaky failure on attempt %d" % attempt)
        if version.get("crash") == "segfault":
            import ctypes
            ctypes.string_at(0)
        gate = version.get("wait_for")  # a file the test creates when the version may go on
        deadline = time.time() + 60
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.02)
        for step in range(steps):
            time.sleep(version.get("sleep_per_step", 0))
            done += 1
            with open(self.checkpoint + ".tmp", "w") as handle:
                handle.write(str(done))
            os.replace(self.checkpoint + ".tmp", self.checkpoint)
            self.report(step=done, total=done + steps - step - 1, loss=1.0 / done)
        record(hook="trained", version=version["name"], t=time.time())
        self.misbehave("train")

    def evaluate_model(self, input_fn, steps):
        record(hook="eval", version=self.current_version["name"], steps=steps, n=len(input_fn))
        return {"accuracy": 0.5, "steps": steps}
'''


class Project:
    """A user's project folder: mlp.config, the two queues, models/ with scripts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models = root / "models"
        self.outputs = self.models / "outputs"
        self.models.mkdir(parents=True)
        self.write("mlp.config", '[MLP]\nmodels_dir = "models"\n')

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def script(self, name: str, versions_code: str, prelude: bool = True) -> Path:
        """A model script: the shared prelude, then ``versions_code`` that sets MODEL."""
        body = (MODEL_PRELUDE if prelude else "") + textwrap.dedent(versions_code)
        path = self.models / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        return path

    def queue(self, scripts: Sequence[str], test: bool = False, blacklist: Optional[Sequence[str]] = None) -> Path:
        name = "models_test.config" if test else "models.config"
        use_blacklist = blacklist is not None
        return self.write(
            name,
            "[MLP]\n"
            f"use_blacklist = {'true' if use_blacklist else 'false'}\n\n"
            "[WHITELISTED_MODELS]\n"
            f"scripts = {json.dumps(list(scripts))}\n\n"
            "[BLACKLISTED_MODELS]\n"
            f"scripts = {json.dumps(list(blacklist or []))}\n",
        )

    def command(self, *args: str) -> List[str]:
        return [sys.executable, "-m", "mlpipeline", "-C", str(self.root), *args]

    def run(self, *args: str, timeout: float = 90, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(env),
            stdin=subprocess.DEVNULL,
        )
        result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
        return result

    def start(
        self, *args: str, env: Optional[Dict[str, str]] = None, prefix: Sequence[str] = (), args_only: bool = False, **popen: Any
    ) -> subprocess.Popen:
        """A daemon in the background; ``prefix`` runs it under another command (``unshare ...``),
        or is the whole command before ``args`` with ``args_only``."""
        options = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        options.update(popen)
        command = [*prefix, *args] if args_only else [*prefix, *self.command(*args)]
        return subprocess.Popen(command, env=self._env(env), **options)

    @staticmethod
    def _env(extra: Optional[Dict[str, str]]) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("MLPIPELINE_HOSTNAME", None)
        env.update(extra or {})
        return env

    # -- reading what it wrote --------------------------------------------------------

    def calls(self, hook: Optional[str] = None) -> List[dict]:
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [row for row in rows if hook is None or row["hook"] == hook]

    def journal(self) -> List[dict]:
        return _jsonl(self.outputs / "history.jsonl")

    def results(self) -> List[dict]:
        return _jsonl(self.outputs / "results.jsonl")

    def log_text(self) -> str:
        logs = list(self.outputs.glob("log-*"))
        return "".join(path.read_text(encoding="utf-8") for path in logs)

    def output_text(self) -> str:
        return "".join(path.read_text(encoding="utf-8") for path in self.outputs.glob("output-*"))

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


def _jsonl(path: Path) -> List[dict]:
    if not path.exists():
        return []
    data = path.read_bytes()
    # A line still being appended as a test polls the file is not read yet (the readers of
    # mlpipeline do the same: records/lines.py).
    whole = data[: data.rfind(b"\n") + 1].decode("utf-8-sig")  # a byte order mark, as mlpipeline's readers take it
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


def versions_code(*lines: str, defaults: str = "learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=2") -> str:
    """``MODEL = Counting(versions)`` with the given ``versions.addV(...)`` lines."""
    body = "\n".join(lines)
    return f"versions = Versions({defaults})\n{body}\nMODEL = Counting(versions, allow_delete_model_dir=True)\n"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "my projects ü" / "exp 1")


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it, all at once: a power cut for that tree."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [parent] + parent.children(recursive=True)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def gpus_here() -> int:
    """How many GPUs nvidia-smi lists on this machine (0 without it)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


@pytest.hookimpl(optionalhook=True)  # xdist's hook: no error where xdist is not installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many test processes `-n auto` (pytest.ini) starts: one a core and one more, at most
    four. The tests mostly wait on the daemons, Ray nodes and Slurm cluster they start: on two
    cores, two processes took 28.8-30.8 min, three 21.2 min with the cores a tenth idle
    (2026-12-08, 648 and 670 tests); more than four would crowd one machine with clusters."""
    return max(1, min((os.cpu_count() or 1) + 1, 4))


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    # Said here, by the process that reports, however many processes collect the tests.
    return None if gpus_here() else "tests marked gpu: deselected, as nvidia-smi lists no GPU on this machine"


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    # Tests marked gpu need a real one: without it they are deselected, and said to be, never skipped.
    if not any(item.get_closest_marker("gpu") for item in items) or gpus_here():
        return
    deselected = [item for item in items if item.get_closest_marker("gpu")]
    items[:] = [item for item in items if not item.get_closest_marker("gpu")]
    config.hook.pytest_deselected(items=deselected)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"deselected {len(deselected)} tests marked gpu: nvidia-smi lists no GPU on this machine")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # In CI every dependency is installed, so a skip means something is missing: fail it.
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {report.longrepr}"


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def scripts_of(rows: Iterable[dict]) -> List[str]:
    return [f"{row['script']}:{row['version']}" for row in rows]


# -- Ray clusters: real nodes on this machine ---------------------------------------------------


def start_ray_cluster(*nodes: Dict[str, Any]) -> Any:
    """A Ray cluster of real nodes on this machine: a head with one CPU and no GPU, then one
    node for each of ``nodes`` (add_node's arguments: ``num_gpus=2`` makes a node with two
    fake GPUs). The caller shuts it down; never with ``ray stop``, which stops every cluster here.

    Token authentication is on (see RAY_AUTH_MODE above)."""
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for node in nodes:
        cluster.add_node(**{"num_cpus": 1, **node})
    cluster.wait_for_nodes()
    return cluster


@pytest.fixture(scope="module")
def ray_cluster() -> Iterable[Any]:
    """A head (1 CPU, no GPU) and a GPU node (1 CPU, 2 fake GPUs), for a whole test module."""
    cluster = start_ray_cluster({"num_gpus": 2})
    yield cluster
    cluster.shutdown()


# -- a Slurm cluster: Debian's daemons on this machine (tests/slurm_cluster.py) -------------------


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: Any) -> Iterable[Any]:
    """One private Slurm cluster for the whole run, started when a test first needs it;
    SLURM_CONF points at it meanwhile, for the Slurm commands and the daemons of the tests."""
    from slurm_cluster import SlurmCluster, missing_tools

    missing = missing_tools()
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and Slurm's daemons ({', '.join(missing) or 'not root'}): .ci/run installs them")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        os.environ.pop("SLURM_CONF", None)
        cluster.stop()


def processes_of_runs(model_dirs_under: Path) -> List[Any]:
    """Every live process of a version whose model_dir is under ``model_dirs_under``, on any
    node of this machine (a version's processes carry MLPIPELINE_MODEL_DIR)."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            model_dir = process.environ().get("MLPIPELINE_MODEL_DIR", "")
            if model_dir.startswith(str(model_dirs_under)) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found
