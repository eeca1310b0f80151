"""SPEC 5 and 6: versions that die in every way a real one does, and what they leave behind."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import alive, kill_tree, versions_code


def test_segfault_exit_and_outside_sigkill_are_failures_with_their_cause(project):
    project.script(
        "a.py",
        versions_code(
            'versions.addV("segfault", crash="segfault")',
            'versions.addV("exits", exit_in="train", exit_code=3)',
            'versions.addV("oom", wait_for="never-created")',
            'versions.addV("survivor")',
        ),
    )
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: any(c["version"] == "oom" for c in project.calls("train")), what="the oom version")
    oom_pid = [c for c in project.calls("train") if c["version"] == "oom"][0]["pid"]
    os.kill(oom_pid, signal.SIGKILL)  # what the out-of-memory killer does: the child alone
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 1, output
    results = {r["version"]: r for r in project.results()}
    assert results["segfault"]["status"] == "failed" and results["segfault"]["signal"] == "SIGSEGV"
    assert "was killed by SIGSEGV" in results["segfault"]["reason"]
    assert results["exits"]["exit_code"] == 3 and "exited with status 3" in results["exits"]["reason"]
    assert results["oom"]["signal"] == "SIGKILL" and "out-of-memory killer" in results["oom"]["reason"]
    assert results["survivor"]["status"] == "finished"
    log, out = project.log_text(), project.output_text()
    assert "a.py:segfault: its process was killed by SIGSEGV" in log
    assert "process ended:  signal SIGSEGV" in out
    assert "process ended:  exit status 3" in out
    assert "process ended:  signal SIGKILL" in out


def test_nothing_a_version_started_outlives_it(project):
    project.script("a.py", versions_code('versions.addV("v1", grandchildren=[False, True])'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    pids = [c["pid"] for c in project.calls("grandchild")]
    assert len(pids) == 2
    assert not any(alive(pid) for pid in pids), "a process of a finished version is still running"


@pytest.mark.slow
def test_second_ctrl_c_kills_at_once_and_no_grandchild_survives(project):
    project.script("a.py", versions_code('versions.addV("stubborn", ignore_signals=True, wait_for="never", grandchildren=[False, True])'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: len(project.calls("grandchild")) == 2, what="the grandchildren")
    child = project.calls("train")[0]["pid"]
    daemon.send_signal(signal.SIGINT)
    project.wait_for(lambda: "SIGINT received" in project.log_text(), what="the first Ctrl-C to be seen")
    assert alive(child)  # it ignores SIGINT: the grace period runs
    daemon.send_signal(signal.SIGINT)
    daemon.communicate(timeout=5)  # well inside the 10 s grace: the second Ctrl-C killed at once
    assert daemon.returncode == 130
    assert project.results()[0]["status"] == "interrupted"
    for pid in [child] + [c["pid"] for c in project.calls("grandchild")]:
        assert not alive(pid)


@pytest.mark.slow
def test_a_version_that_ignores_sigterm_is_killed_after_the_grace_period(project):
    project.script("a.py", versions_code('versions.addV("stubborn", ignore_signals=True, wait_for="never")'))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: project.calls("train"), what="training")
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 143
    record = project.results()[0]
    assert record["status"] == "interrupted" and record["signal"] == "SIGKILL"
    assert 9 < record["duration_s"] < 25
    assert not alive(project.calls("train")[0]["pid"])


def test_peak_memory_and_cpu_time_cover_the_whole_tree(project):
    project.script("a.py", versions_code('versions.addV("v1", hold_mb=300, burn_cpu_s=1.0)'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    record = project.results()[0]
    assert record["peak_memory_mb"] >= 300  # held by a grandchild, not the version's own process
    assert record["cpu_s"] >= 1.0
    assert "peak memory:" in project.output_text()


def test_a_power_cut_leaves_every_earlier_record_exactly_once(project):
    project.script("a.py", versions_code('versions.addV("one")', 'versions.addV("two")', 'versions.addV("cut", wait_for="never")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: any(c["version"] == "cut" for c in project.calls("train")), what="the third version")
    kill_tree(daemon.pid)
    daemon.communicate()
    (project.root / "never").touch()
    assert project.run("-r", "-u").returncode == 0
    assert [(r["version"], r["status"]) for r in project.results()] == [("one", "finished"), ("two", "finished"), ("cut", "finished")]
    output = project.output_text()
    for version in ("one", "two", "cut"):
        assert output.count(f"a.py:{version}    FINISHED") == 1
        assert project.log_text().count(f"a.py:{version} finished in") == 1
        assert sum(e["version"] == version and e["event"] == "finished" for e in project.journal()) == 1


def test_ctrl_c_while_a_script_is_listed_records_nothing_and_says_it_was_stopped(project):
    project.script("slow.py", "import time\ntime.sleep(30)\n" + versions_code('versions.addV("v")'))
    project.queue(["slow.py"])
    daemon = project.start("-r", start_new_session=True)
    project.wait_for(lambda: "execution mode started" in project.log_text(), what="the daemon's start")
    time.sleep(1)  # the listing child imports the script now
    os.killpg(daemon.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to the whole foreground group
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 130, output
    assert "stopped by SIGINT; records in" in output and "nothing to run" not in output and "failed" not in output
    assert project.results() == []  # the script is not recorded failed: it was only stopped
    assert "execution mode ended: stopped by SIGINT" in project.log_text()


ASKED_FOR_CHECKPOINTS = """
from mlpipeline.script_support import checkpoint_request
checkpoint_request.listen()
print("listening", flush=True)
steps = answered = 0
while True:  # a training loop that asks at every step
    answered += checkpoint_request.checkpoint_asked()
    steps += 1
    if steps % 20000 == 0:
        print(steps, answered, flush=True)
"""


def test_sigusr1_in_bursts_never_stops_a_version_that_listens():
    # A version gets a Slurm job's warning twice in a moment (the job's whole process group
    # and the worker itself are told): a handler that took a lock hung the version mid-step.
    child = subprocess.Popen([sys.executable, "-c", ASKED_FOR_CHECKPOINTS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    try:
        assert child.stdout.readline() == "listening\n"
        reader.start()
        sent, until = 0, time.monotonic() + 3
        while time.monotonic() < until and child.poll() is None:
            os.kill(child.pid, signal.SIGUSR1)
            sent += 1
        seen = len(lines)
        deadline = time.monotonic() + 30
        while len(lines) <= seen + 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read()[-2000:]
        assert len(lines) > seen + 2, f"the version stopped stepping after {sent} SIGUSR1"
        assert int(lines[-1].split()[1]) >= 1, lines[-3:]  # it was asked, and answered
    finally:
        child.kill()
        child.wait()


COUNTS_SIGUSR1 = """
import signal, subprocess, sys, time
signal.signal(signal.SIGUSR1, lambda *_: print(sys.argv[1], "SIGUSR1", flush=True))
if sys.argv[1] == "child":  # and one below it that left its process group
    subprocess.Popen([sys.executable, "-c", sys.argv[2], "grandchild", ""], start_new_session=True)
print(sys.argv[1], "listening", flush=True)
time.sleep(60)
"""


def test_a_signal_for_a_version_reaches_each_of_its_processes_once():
    from mlpipeline.executors.process_tree import ProcessTree

    child = subprocess.Popen([sys.executable, "-c", COUNTS_SIGUSR1, "child", COUNTS_SIGUSR1], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    tree = ProcessTree(child.pid)
    try:
        assert sorted(child.stdout.readline() for _ in range(2)) == ["child listening\n", "grandchild listening\n"]
        tree.signal(signal.SIGUSR1)  # its group, and the members outside it
        time.sleep(1)
    finally:
        tree.signal(signal.SIGKILL)
    output, _ = child.communicate()
    assert sorted(output.splitlines()) == ["child SIGUSR1", "grandchild SIGUSR1"]


STOPS_HERE_ON_A_SIGNAL = """
import signal, time
from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import Versions

class Data(DataLoader):
    def get_train_sample_count(self): return 100
    def get_test_sample_count(self): return 10
    def get_train_input(self, **kwargs): return None
    def get_test_input(self, **kwargs): return None

class StopsHere(Model):
    # What training loops do with a stop: end the loop, keep what was trained, return.
    def __init__(self, versions):
        super().__init__(versions, allow_delete_model_dir=False)
        self.stop = False
        signal.signal(signal.SIGTERM, lambda signum, frame: setattr(self, "stop", True))

    def _done(self):
        try:
            return int(open(self.model_dir_path() + "/done").read())
        except OSError:
            return 0

    def model_dir_path(self):
        import os
        return os.environ["MLPIPELINE_MODEL_DIR"]

    def get_trained_step_count(self):
        return self._done() or None

    def train_model(self, input_fn, steps):
        done = self._done()
        try:
            for _ in range(steps):
                if self.stop:
                    break
                time.sleep(0.05)
                done += 1
                open(self.model_dir_path() + "/done", "w").write(str(done))
                self.report(step=done, total=100, loss=1.0 / done)
        except KeyboardInterrupt:
            print("caught the stop; saving and returning")

    def evaluate_model(self, input_fn, steps):
        return {"trained": self._done()}

MODEL = StopsHere(Versions(learning_rate=0.1, dataloader=Data(), batch_size=1, epoc_count=1))
MODEL.versions.addV("v")
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_version_that_returns_early_when_stopped_is_cut_off_and_resumed_not_finished(project, signum):
    # Hand-written loops often end training on a Ctrl-C or SIGTERM and return (a saved flag, a caught KeyboardInterrupt):
    # the version was recorded finished, "100 of 100" steps, and -u never trained the rest.
    project.script("stops.py", STOPS_HERE_ON_A_SIGNAL)
    project.queue(["stops.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: "loss=" in project.log_text(), what="the first report")
    time.sleep(1)
    daemon.send_signal(signum)
    output, _ = daemon.communicate(timeout=60)
    [cut] = project.results()
    assert cut["status"] == "interrupted", output
    assert f"stopped by {signal.Signals(signum).name} while train_model ran" in cut["reason"]
    assert 0 < cut["steps"]["trained"] < 100, cut["steps"]  # the last step it reported
    done = project.run("-r", "-u")
    assert done.returncode == 0, done.output
    resumed = project.results()[-1]
    assert (resumed["status"], resumed["resumed"], resumed["eval_test"]) == ("finished", True, {"trained": 100}), resumed
    assert resumed["steps"]["trained"] == 100 - cut["steps"]["trained"]


def test_a_plain_model_that_leaves_its_loop_early_is_recorded_with_the_steps_it_reported(project):
    # Its own early stopping (break at step 30 of 100): recorded "100 of 100" before.
    script = STOPS_HERE_ON_A_SIGNAL.replace("                if self.stop:\n", "                if self.stop or done == 30:\n")
    project.script("stops.py", script)
    project.queue(["stops.py"])
    done = project.run("-r")
    assert done.returncode == 0, done.output
    [row] = project.results()
    assert (row["status"], row["steps"]["trained"], row["steps"]["total"]) == ("finished", 30, 100), row["steps"]
    assert "steps:          30 of 100" in project.output_text()
