"""SPEC 5-7 under chaos: three daemons with two workers each on one project folder (three host
names, so that they judge each other by heartbeat), 40 versions that checkpoint every step, and
for up to CHAOS_S a seeded random loop of kill -9 (of a daemon alone, of its process group, of it
with everything below it, of one version's worker), SIGSTOP mostly past the heartbeat window then
SIGCONT, and SIGTERM, restarting what died, while models.config is rewritten and a script is
added. Then a final ``-r -u --retry-failed`` (a worker killed with -9 is a failure, SPEC 5, which
its daemon retries in its session unless it died first) and a plain ``-r -u`` that must find
nothing to do, and the checks: every version finished exactly once (journal and results.jsonl),
no two processes ever worked on one version at once, every resumed run continued from its
checkpoint and no step was trained twice once its checkpoint was in place, nothing was left
running, no output has a traceback.

The seed is printed and named in every assertion: ``MLPIPELINE_CHAOS_SEED=<seed> python -m
pytest tests/test_chaos.py`` replays the same choices (the machine's timing still varies).
``MLPIPELINE_CHAOS_S`` bounds the chaos loop (default 80 s; it ends sooner once every version
has finished).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import psutil
import pytest

SEED_VARIABLE = "MLPIPELINE_CHAOS_SEED"
CHAOS_S = float(os.environ.get("MLPIPELINE_CHAOS_S", "80"))
BEAT_S = 0.3  # MLPIPELINE_HEARTBEAT_S: a daemon of another namespace is taken over after 6 silent beats
HOSTS = ("host-a", "host-b", "host-c")  # one namespace each: they judge each other by heartbeat
DRAIN_S = 180.0  # after the chaos: how long the daemons get to finish the queue
STEP_S = 0.3


def totals(prefix: str, count: int) -> Dict[str, int]:
    """Versions of one script and their step counts: 20 to 36 steps of STEP_S."""
    return {f"{prefix}{i:02d}": 20 + (7 * i) % 17 for i in range(count)}


SCRIPTS = {"a.py": totals("a", 16), "b.py": totals("b", 16), "c.py": totals("c", 8)}  # c.py: added mid-chaos

# Each run of a version notes what it does in chaos/<script>-<version>.jsonl (O_APPEND, one write a
# line, so the lines of all runs are in the order they happened): "clean" (a fresh run emptied the
# model_dir), "begin" (the checkpoint it found), "train" (the steps the daemon asked for), "step"
# (written after step k's checkpoint was atomically in place). And from its first hook to its death
# a run holds a flock on chaos/<script>-<version>.lock: a process keeps it while SIGSTOPped, and the
# kernel lets go of it only when the process is gone, so a second run that finds it held worked on
# the version while another process of it lived: a violation, noted in chaos/violations.jsonl.
MODEL = '''
import fcntl, json, os, time
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

STEP_S = {step_s!r}
TOTALS = {totals!r}
TRAILS = os.path.join(os.getcwd(), "chaos")  # children run in the project folder
_held = []


def note(name, **fields):
    fields.update(pid=os.getpid(), run_id=os.environ.get("MLPIPELINE_RUN_ID"))
    fd = os.open(os.path.join(TRAILS, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(fields) + "\\n").encode())
    finally:
        os.close(fd)


def trail():
    return os.environ["MLPIPELINE_SCRIPT"] + "-" + os.environ["MLPIPELINE_VERSION"]


def hold_version():
    """Take this version's lock for the rest of this process's life (never let go)."""
    if _held:
        return
    fd = os.open(os.path.join(TRAILS, trail() + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    _held.append(fd)
    me = "pid %d run %s" % (os.getpid(), os.environ.get("MLPIPELINE_RUN_ID"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note("violations.jsonl", version=trail(), me=me, holder=os.pread(fd, 200, 0).decode(errors="replace"))
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, me.encode(), 0)


class Data(DataLoader):
    def __init__(self, n):
        self.n = n

    def get_train_input(self, **kwargs):
        return list(range(self.n))

    def get_test_input(self, **kwargs):
        return [0]

    def get_train_sample_count(self):
        return self.n

    def get_test_sample_count(self):
        return 1


class Chaotic(Model):
    def clean_model_dir(self, model_dir):
        hold_version()
        note(trail() + ".jsonl", kind="clean")
        path = os.path.join(model_dir, "step")
        if os.path.exists(path):
            os.remove(path)

    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        hold_version()
        self.checkpoint = os.path.join(model_dir, "step")

    def get_trained_step_count(self):
        found = None
        if os.path.exists(self.checkpoint):
            with open(self.checkpoint) as handle:
                found = int(handle.read())
        self.found = found or 0
        note(trail() + ".jsonl", kind="begin", found=self.found)
        return found

    def train_model(self, input_fn, steps):
        name = self.current_version["name"]
        note(trail() + ".jsonl", kind="train", steps=steps)
        done = self.found
        for _ in range(steps):
            time.sleep(STEP_S)
            done += 1
            temporary = "%s.%d.tmp" % (self.checkpoint, os.getpid())
            with open(temporary, "w") as handle:
                handle.write(str(done))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.checkpoint)
            note(trail() + ".jsonl", kind="step", step=done)
            self.report(step=done, total=TOTALS[name], loss=1.0 / done)

    def evaluate_model(self, input_fn, steps):
        return {{"accuracy": 1.0}}


versions = Versions(learning_rate=0.1, dataloader=Data(1), batch_size=1, epoc_count=1)
for name, total in TOTALS.items():
    versions.addV(name, dataloader=Data(total), model_dir_suffix=name)
MODEL = Chaotic(versions, allow_delete_model_dir=True)
'''


def queue_text(scripts: List[str]) -> str:
    return f"[MLP]\nuse_blacklist = false\n\n[WHITELISTED_MODELS]\nscripts = {json.dumps(scripts)}\n\n[BLACKLISTED_MODELS]\nscripts = []\n"


def read_jsonl(path: Path, strict: bool = False) -> List[dict]:
    """The records of a JSON-lines file; a line that is not one fails with ``strict``, else is left out
    (a line being appended right now)."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if strict:
                raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]!r}") from None
    return rows


def power_cut(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it at once: all frozen first, round after round until
    no new process appears, so nothing forks or is reparented between the look and the kill."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    frozen: Dict[int, psutil.Process] = {}
    for _ in range(20):
        try:
            found = [root] + root.children(recursive=True)
        except psutil.Error:
            found = [root]
        new = [process for process in found if process.pid not in frozen]
        if not new:
            break
        for process in new:
            try:
                process.send_signal(signal.SIGSTOP)
                frozen[process.pid] = process
            except psutil.Error:
                pass
    for process in frozen.values():
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    # This process's own children are left for their Popen to reap, which keeps their status.
    me = os.getpid()
    others = []
    for process in frozen.values():
        try:
            if process.ppid() != me:
                others.append(process)
        except psutil.Error:
            pass
    psutil.wait_procs(others, timeout=10)


def processes_of(project) -> List[psutil.Process]:
    """Every live process of this project: daemons (``-C <project>``), keepers and workers (their
    cwd, and MLPIPELINE_MODEL_DIR), whatever their parent."""
    root = str(project.root)
    me = os.getpid()
    found = []
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            ours = (
                process.environ().get("MLPIPELINE_MODEL_DIR", "").startswith(root)
                or any(root in part for part in process.cmdline())
                or process.cwd().startswith(root)
            )
        except psutil.Error:
            continue
        if ours:
            found.append(process)
    return found


class Daemon:
    """One of the three daemon slots: a host of its own, restarted whenever it died."""

    def __init__(self, slot: int, host: str) -> None:
        self.slot = slot
        self.host = host
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0
        self.stopped_until: Optional[float] = None  # SIGSTOPped: SIGCONT at this time
        self.restart_at: Optional[float] = None
        self.outputs: List[Path] = []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __str__(self) -> str:
        return f"{self.host}#{self.starts}" + (f" (pid {self.process.pid})" if self.process else "")


class Chaos:
    def __init__(self, project, seed: int, logs: Path) -> None:
        self.project = project
        self.seed = seed
        self.rng = random.Random(seed)
        self.logs = logs
        self.daemons = [Daemon(slot, host) for slot, host in enumerate(HOSTS)]
        self.scripts = ["a.py", "b.py"]
        self.actions: List[str] = []
        self.t0 = time.monotonic()

    # -- what is done ----------------------------------------------------------------------

    def say(self, what: str) -> None:
        self.actions.append(f"{time.monotonic() - self.t0:7.2f} s  {what}")

    def context(self) -> str:
        """What a failure message carries: the seed, to replay it, and the last actions."""
        return f"[chaos seed {self.seed}; replay with {SEED_VARIABLE}={self.seed}]\nlast actions:\n" + "\n".join(self.actions[-25:])

    def start(self, daemon: Daemon, *args: str) -> None:
        daemon.starts += 1
        output = self.logs / f"{daemon.host}-{daemon.starts}.out"
        daemon.outputs.append(output)
        with open(output, "w") as handle:
            daemon.process = self.project.start(
                *(args or ("-r", "-u")),
                env={"MLPIPELINE_HOSTNAME": daemon.host, "MLPIPELINE_HEARTBEAT_S": str(BEAT_S)},
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        daemon.restart_at = None
        self.say(f"start {daemon}")

    def finished_versions(self) -> Counter:
        return Counter(
            (e.get("script"), e.get("version")) for e in read_jsonl(self.project.outputs / "history.jsonl") if e.get("event") == "finished"
        )

    def expected(self) -> List[tuple]:
        return [(script, name) for script in self.scripts for name in SCRIPTS[script]]

    def all_finished(self) -> bool:
        done = self.finished_versions()
        return all(done[key] for key in self.expected())

    # -- the loop ----------------------------------------------------------------------

    def tend(self) -> None:
        """SIGCONT what is due, note what died, restart what died a while ago."""
        now = time.monotonic()
        for daemon in self.daemons:
            if daemon.stopped_until is not None and now >= daemon.stopped_until:
                daemon.stopped_until = None
                if daemon.alive():
                    daemon.process.send_signal(signal.SIGCONT)
                    self.say(f"SIGCONT {daemon}")
            if daemon.process is not None and not daemon.alive() and daemon.restart_at is None:
                self.say(f"{daemon} ended with {daemon.process.returncode}")
                daemon.restart_at = now + self.rng.uniform(0.0, 2.0)
                daemon.stopped_until = None
            if daemon.restart_at is not None and now >= daemon.restart_at:
                self.start(daemon)

    def run(self, until: float) -> None:
        add_script_at = self.t0 + self.rng.uniform(0.15, 0.5) * CHAOS_S
        actions = [
            (self.kill_alone, 1.5), (self.kill_group, 1), (self.kill_tree, 2), (self.kill_worker, 3),
            (self.pause, 3), (self.terminate, 1.5), (self.rewrite_queue, 1.5),
        ]  # fmt: skip
        functions, weights = zip(*actions)
        next_action = time.monotonic() + self.rng.uniform(2.0, 4.0)
        while time.monotonic() < until:
            self.tend()
            if "c.py" not in self.scripts and time.monotonic() >= add_script_at:
                self.add_script()
            elif "c.py" in self.scripts and self.all_finished():
                self.say("every version finished: the chaos ends")
                return
            if time.monotonic() >= next_action:
                self.rng.choices(functions, weights)[0]()
                next_action = time.monotonic() + self.rng.uniform(0.5, 2.5)
            time.sleep(0.1)

    def running(self, include_stopped: bool = False) -> List[Daemon]:
        return [d for d in self.daemons if d.alive() and (include_stopped or d.stopped_until is None)]

    def kill_alone(self) -> None:
        targets = self.running(include_stopped=True)
        if targets:
            daemon = self.rng.choice(targets)
            daemon.process.send_signal(signal.SIGKILL)
            self.say(f"kill -9 {daemon} alone")

    def kill_group(self) -> None:
        targets = self.running(include_stopped=True)
        if targets:
            daemon = self.rng.choice(targets)
            os.killpg(daemon.process.pid, signal.SIGKILL)  # kill -9 -PGID: its keepers lead groups of their own
            self.say(f"kill -9 the process group of {daemon}")

    def kill_tree(self) -> None:
        targets = self.running(include_stopped=True)
        if targets:
            daemon = self.rng.choice(targets)
            power_cut(daemon.process.pid)
            self.say(f"kill -9 {daemon} with everything below it")

    def kill_worker(self) -> None:
        outputs = str(self.project.outputs)
        workers = []
        for process in psutil.process_iter():
            try:
                environment = process.environ()
                # The worker is the keeper's fork: its parent carries the same run.
                if environment.get("MLPIPELINE_MODEL_DIR", "").startswith(outputs) and process.status() != psutil.STATUS_ZOMBIE:
                    if process.parent().environ().get("MLPIPELINE_RUN_ID") == environment.get("MLPIPELINE_RUN_ID"):
                        workers.append((process, environment))
            except (psutil.Error, AttributeError):
                continue
        if workers:
            process, environment = self.rng.choice(sorted(workers, key=lambda item: item[0].pid))
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                return
            self.say(f"kill -9 the worker {process.pid} of {environment.get('MLPIPELINE_SCRIPT')}:{environment.get('MLPIPELINE_VERSION')}")

    def pause(self) -> None:
        targets = self.running()
        if targets:
            daemon = self.rng.choice(targets)
            # Mostly past the window in which other daemons take its claims over (6 beats), at
            # times only past its keepers' (4 beats), or shorter.
            window = 6 * BEAT_S + 0.5  # and the watcher's half-second look
            seconds = self.rng.choice([self.rng.uniform(window + 0.5, window + 3.0)] * 3 + [self.rng.uniform(0.3, window)])
            daemon.process.send_signal(signal.SIGSTOP)
            daemon.stopped_until = time.monotonic() + seconds
            self.say(f"SIGSTOP {daemon} for {seconds:.1f} s")

    def terminate(self) -> None:
        targets = self.running()
        if targets:
            daemon = self.rng.choice(targets)
            daemon.process.send_signal(signal.SIGTERM)
            self.say(f"SIGTERM {daemon}")

    def rewrite_queue(self) -> None:
        scripts = list(self.scripts)
        self.rng.shuffle(scripts)
        self.write_queue(scripts, atomic=self.rng.random() < 0.5)

    def write_queue(self, scripts: List[str], atomic: bool) -> None:
        path = self.project.root / "models.config"
        text = queue_text(scripts)
        if atomic:
            temporary = path.with_name(".models.config.tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
        else:  # an editor that rewrites in place, slowly: a daemon may read it half written
            cut = self.rng.randrange(1, len(text))
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text[:cut])
                handle.flush()
                time.sleep(self.rng.uniform(0.0, 0.3))
                handle.write(text[cut:])
        self.say(f"models.config rewritten ({'renamed into place' if atomic else 'in place'}): {scripts}")

    def add_script(self) -> None:
        temporary = self.project.root / ".c.py.tmp"
        temporary.write_text(script_text("c.py"), encoding="utf-8")
        os.replace(temporary, self.project.models / "c.py")
        self.scripts.append("c.py")
        self.write_queue(self.scripts, atomic=True)
        self.say("c.py added")

    # -- the end -----------------------------------------------------------------------

    def drain(self) -> None:
        """No more chaos: wake what is stopped, start what is dead, and let the daemons finish."""
        for daemon in self.daemons:
            if daemon.stopped_until is not None and daemon.alive():
                daemon.process.send_signal(signal.SIGCONT)
                self.say(f"SIGCONT {daemon}")
            daemon.stopped_until = None
            if not daemon.alive() and not self.all_finished():
                self.start(daemon)
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and any(d.alive() for d in self.daemons):
            time.sleep(0.2)
        hanging = [str(d) for d in self.daemons if d.alive()]
        assert not hanging, f"{self.context()}\nthe daemons {hanging} did not end within {DRAIN_S:.0f} s of the chaos"
        self.say("every daemon ended: " + ", ".join(f"{d} with {d.process.returncode}" for d in self.daemons if d.process))

    def kill_everything(self) -> None:
        for daemon in self.daemons:
            if daemon.alive():
                daemon.process.send_signal(signal.SIGCONT)
                power_cut(daemon.process.pid)
            if daemon.process is not None:
                try:
                    daemon.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for process in processes_of(self.project):
            power_cut(process.pid)


def script_text(name: str) -> str:
    return MODEL.format(step_s=STEP_S, totals=SCRIPTS[name])


def tracebacks(paths: List[Path]) -> List[str]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if "Traceback (most recent call last)" in text:
            at = text.index("Traceback (most recent call last)")
            found.append(f"{path.name}:\n{text[at:at + 3000]}")
    return found


def check_trail(key: tuple, trail: List[dict], fresh_allowed: set, finished_run: Optional[str], total: int) -> List[str]:
    """What is wrong in one version's trail: overlapping runs, a resumed run that did not continue
    from its checkpoint, a step trained twice once its checkpoint was in place, a wrong end."""
    label = f"{key[0]}:{key[1]}"
    problems = []
    durable = 0  # the last step whose checkpoint was in place, as far as the trail shows
    current: Optional[int] = None  # the pid whose lines come now
    retired = set()  # pids of runs another run has come after: they must never write again
    runs: Dict[str, dict] = {}
    for number, row in enumerate(trail, 1):
        where = f"{label}, trail line {number} (pid {row['pid']}, run {row['run_id']})"
        if row["pid"] != current:
            if row["pid"] in retired:
                problems.append(f"{where}: this process wrote again after another run of the version had begun: two trained at once")
            if current is not None:
                retired.add(current)
            current = row["pid"]
        run = runs.setdefault(row["run_id"], {"fresh": False, "found": None, "steps": None, "last": None})
        kind = row["kind"]
        if kind == "clean":
            if durable and row["run_id"] not in fresh_allowed:
                problems.append(f"{where}: a fresh run emptied a model_dir at step {durable}, where -u resumes")
            run["fresh"] = True
            durable = 0
        elif kind == "begin":
            found = row["found"]
            run["found"] = run["last"] = found
            if run["fresh"] and found != 0:
                problems.append(f"{where}: a fresh run found a checkpoint at step {found}")
            elif not run["fresh"] and not durable <= found <= durable + 1:
                problems.append(f"{where}: resumed at step {found}, but the checkpoint was at step {durable}")
            durable = found
        elif kind == "train":
            run["steps"] = row["steps"]
            if run["found"] is None or row["steps"] != total - run["found"]:
                problems.append(f"{where}: asked for {row['steps']} steps after the checkpoint at {run['found']} (of {total})")
        elif kind == "step":
            if run["last"] is None or row["step"] != run["last"] + 1 or row["step"] <= durable:
                problems.append(f"{where}: step {row['step']} after step {run['last']} (checkpoint at {durable}): a step trained twice")
            run["last"] = durable = row["step"]
    if finished_run is not None:
        run = runs.get(finished_run)
        if run is None or run["last"] != total:
            problems.append(f"{label}: its finished run {finished_run} ended at step {run and run['last']}, not {total}")
    return problems


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chaos_of_kills_pauses_and_edits_leaves_every_version_finished_exactly_once(project, tmp_path):
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {seed} (replay with {SEED_VARIABLE}={seed})", flush=True)
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nworkers = 2\nretries = 2\n')
    for name in ("a.py", "b.py"):
        (project.models / name).write_text(script_text(name), encoding="utf-8")
    (project.root / "models.config").write_text(queue_text(["a.py", "b.py"]), encoding="utf-8")
    (project.root / "chaos").mkdir()
    logs = tmp_path / "daemons"
    logs.mkdir()
    chaos = Chaos(project, seed, logs)
    final_outputs: List[Path] = []
    try:
        for daemon in chaos.daemons:
            chaos.start(daemon)
        chaos.run(until=time.monotonic() + CHAOS_S)
        chaos.drain()
        # The final pass: -u resumes what was cut off; a worker killed with -9 is recorded as
        # failed (SPEC 5: what the out-of-memory killer does), and its daemon retries it in the
        # session (retries = 2) unless the daemon died first: --retry-failed runs those again.
        journal_before = len(read_jsonl(project.outputs / "history.jsonl", strict=True))
        final = project.run("-r", "-u", "--retry-failed", timeout=240)
        (logs / "final.out").write_text(final.output, encoding="utf-8")
        final_outputs.append(logs / "final.out")
        chaos.say(f"final -r -u --retry-failed ended with {final.returncode}")
        assert final.returncode == 0, f"{chaos.context()}\n{final.output[-5000:]}"
        journal_before_again = len(read_jsonl(project.outputs / "history.jsonl", strict=True))
        again = project.run("-r", "-u", timeout=120)
        (logs / "again.out").write_text(again.output, encoding="utf-8")
        final_outputs.append(logs / "again.out")
        assert again.returncode == 0, f"{chaos.context()}\n{again.output[-5000:]}"
        # Nothing of any daemon is left running (a killed keeper's workers, a frozen process...);
        # what ends as its daemon ends gets a moment to be gone.
        deadline = time.monotonic() + 10
        while processes_of(project) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = []
        for process in processes_of(project):
            try:
                left.append((process.pid, process.status(), process.cmdline()))
            except psutil.Error:
                pass
    finally:
        chaos.kill_everything()
        print("\n".join(chaos.actions))
    context = chaos.context()

    journal = read_jsonl(project.outputs / "history.jsonl", strict=True)
    # A second -u finds nothing to do.
    assert not [e for e in journal[journal_before_again:] if e["event"] == "claimed"], f"{context}\n{again.output[-3000:]}"
    expected = sorted((script, name) for script in SCRIPTS for name in SCRIPTS[script])
    # Every version finished exactly once, in the journal and in results.jsonl.
    finished = Counter((e["script"], e["version"]) for e in journal if e["event"] == "finished")
    assert finished == Counter(expected), f"{context}\nfinished in the journal: {dict(finished - Counter(expected))} extra, {sorted(set(expected) - set(finished))} missing"
    results = read_jsonl(project.outputs / "results.jsonl", strict=True)
    finished_results = Counter((r["script"], r["version"]) for r in results if r["status"] == "finished")
    assert finished_results == Counter(expected), f"{context}\nfinished in results.jsonl: {dict(finished_results - Counter(expected))} extra, {sorted(set(expected) - set(finished_results))} missing"
    finished_runs = {(e["script"], e["version"]): e["run_id"] for e in journal if e["event"] == "finished"}
    assert {(r["script"], r["version"]): r["run_id"] for r in results if r["status"] == "finished"} == finished_runs, context
    # No two processes ever worked on one version at once; each resumed run went on from its
    # checkpoint; no step was trained twice once its checkpoint was in place; each ended at its total.
    trails = project.root / "chaos"
    violations = read_jsonl(trails / "violations.jsonl", strict=True)
    assert not violations, f"{context}\ntwo processes worked on one version at once: {violations}"
    fresh_allowed = {e["run_id"] for e in journal[journal_before:] if e["event"] == "claimed"}  # --retry-failed starts afresh
    problems = []
    for key in expected:
        trail = read_jsonl(trails / f"{key[0]}-{key[1]}.jsonl", strict=True)
        problems += check_trail(key, trail, fresh_allowed, finished_runs.get(key), SCRIPTS[key[0]][key[1]])
        checkpoint = project.outputs / "model_ckpts" / f"{key[0][:-3]}-{key[1]}" / "step"
        if int(checkpoint.read_text()) != SCRIPTS[key[0]][key[1]]:
            problems.append(f"{key}: its checkpoint is at {checkpoint.read_text()}, not {SCRIPTS[key[0]][key[1]]}")
    assert not problems, context + "\n" + "\n".join(problems[:30])
    # Nothing was left running, and nothing printed a traceback.
    assert not left, f"{context}\nleft running: {left}"
    outputs = [path for daemon in chaos.daemons for path in daemon.outputs] + final_outputs
    found = tracebacks(outputs)
    assert not found, context + "\n" + "\n".join(found[:3])
