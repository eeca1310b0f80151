"""SPEC 6: no process of a version outlives it, or its daemon; no version runs beside an earlier
run of itself. The daemon is killed alone, hung up on, and the version forks its way out."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from conftest import REPO, alive, versions_code

SLOW = 'versions.addV("slow", sleep_per_step=0.05, epoc_count=20)'  # 2,000 steps: a minute and more


def checkpoint(project, name="a"):
    path = project.outputs / "model_ckpts" / name / "steps.txt"
    return int(path.read_text() or 0) if path.exists() else 0


def kill_daemon_mid_version(project, steps=40, model_dir="a"):
    """A daemon (-r -u) killed alone once its version has trained ``steps`` steps; returns the
    step its version was cut at, once the version is gone too."""
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: checkpoint(project, model_dir) >= steps, timeout=60, what=f"{steps} steps")
    version = project.calls("train")[0]["pid"]
    daemon.kill()
    daemon.communicate()
    assert gone_within([version], 5), "the version trains on without its daemon"
    return checkpoint(project, model_dir)


def gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
def test_a_daemon_killed_alone_takes_its_version_with_it_and_the_next_run_resumes_it(project, preload):
    if preload:
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\npreload = ["wave"]\n')
    project.script("a.py", versions_code(SLOW.replace('"slow"', '"slow", grandchildren=[False, True]')))
    project.queue(["a.py"])
    temporary = project.root / "tmp"
    temporary.mkdir()
    daemon = project.start("-r", "-u", env={"TMPDIR": str(temporary)})
    project.wait_for(lambda: checkpoint(project) >= 5, what="some steps")
    version = project.calls("train")[0]["pid"]
    grandchildren = [c["pid"] for c in project.calls("grandchild")]
    assert [path.name.split("-")[2] for path in temporary.glob("mlpipeline-run-*")] == [str(daemon.pid)]
    daemon.kill()  # the daemon alone: the out-of-memory killer, or kill -9 of its pid
    daemon.communicate()
    assert gone_within([version, *grandchildren], 5), "the version trains on without its daemon"
    project.wait_for(lambda: not list(temporary.glob("mlpipeline-run-*")), timeout=5, what="its keeper to remove the run's folder")
    cut_at = checkpoint(project)
    time.sleep(0.5)
    assert checkpoint(project) == cut_at  # nobody trains in its model_dir any more

    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    resumed = project.calls("train")[-1]
    assert resumed["start"] == cut_at and resumed["pid"] != version
    assert [e["event"] for e in project.journal() if e["event"] in ("started", "interrupted", "finished")] == [
        "started", "interrupted", "started", "finished",
    ]


def test_run_folders_a_daemon_killed_with_its_tree_left_are_removed_by_the_next(project, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    gone_pid = int(open("/proc/sys/kernel/pid_max").read()) + 1  # no process has it
    left = {
        "mlpipeline-run-%d-abc" % gone_pid: False,  # its maker is gone: removed
        "mlpipeline-run-1-def": True,  # its maker runs (init, for one started before the folder was made): kept
        "mlpipeline-run-ghijkl": True,  # an older release's, naming no pid: kept
    }
    for name in left:
        (temporary / name).mkdir()
        (temporary / name / "request.json").write_text("{}")
        os.utime(temporary / name, (time.time() - 120, time.time() - 120))  # past ABANDONED_AFTER_S
    project.script("a.py", versions_code('versions.addV("v")'))
    project.queue(["a.py"])
    assert project.run("-r", env={"TMPDIR": str(temporary)}).returncode == 0
    assert {name: (temporary / name).exists() for name in left} == left


def test_sighup_stops_like_sigterm_and_the_version_resumes(project):
    project.script("a.py", versions_code(SLOW, 'versions.addV("later")'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: checkpoint(project) >= 3, what="some steps")
    version = project.calls("train")[0]["pid"]
    daemon.send_signal(signal.SIGHUP)  # the ssh session that started it closed
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 129, output
    assert "Traceback" not in output
    assert not alive(version)
    record = project.results()[0]
    # The daemon's signal, and the SIGTERM the version got.
    assert record["status"] == "interrupted" and "stopped by SIGHUP (passed on to it as SIGTERM)" in record["reason"]
    assert "SIGHUP received" in project.log_text()
    again = project.run("-r", "-u")
    assert again.returncode == 0, again.output
    assert project.calls("train")[1]["start"] > 0  # resumed from its checkpoint
    assert [r["version"] for r in project.results() if r["status"] == "finished"] == ["slow", "later"]


def test_under_nohup_a_closed_terminal_changes_nothing(project):
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go")'))
    project.queue(["a.py"])
    daemon = project.start("-r", preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    project.wait_for(lambda: project.calls("train"), what="training")
    daemon.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert project.results()[0]["status"] == "finished"


def test_a_version_whose_keeper_died_too_is_ended_before_it_runs_again(project):
    # The daemon and the version's keeper killed together (pkill -9 of both): the version's worker
    # is left to init, still training. The next daemon must end it before resuming the version.
    project.script("a.py", versions_code(SLOW))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: checkpoint(project) >= 3, what="some steps")
    worker = psutil.Process(project.calls("train")[0]["pid"])
    keeper = worker.parent()
    assert "mlpipeline.child.keeper" in " ".join(keeper.cmdline())
    keeper.kill()
    daemon.kill()
    daemon.communicate()
    time.sleep(0.5)
    assert worker.is_running()  # orphaned, unsupervised, training on

    again = project.start("-r", "-u")
    project.wait_for(lambda: len(project.calls("train")) == 2, what="the resumed run")
    assert not worker.is_running(), "the earlier run still trains beside the resumed one"
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output
    assert "processes of its earlier run" in project.log_text()


DOUBLE_FORK = textwrap.dedent(
    '''
    class Escaping(Counting):
        def train_model(self, input_fn, steps):
            record(hook="train", version=self.current_version["name"], steps=steps, start=0, pid=os.getpid(), t=time.time())
            read, write = os.pipe()
            if os.fork() == 0:
                os.setsid()
                grandchild = os.fork()
                if grandchild == 0:
                    os.close(read)
                    os.write(write, str(os.getpid()).encode())
                    os.close(write)
                    time.sleep(600)
                os._exit(0)
            os.close(write)
            pid = int(os.read(read, 32))
            record(hook="grandchild", version=self.current_version["name"], pid=pid)
            if self.current_version.get("exit_at_once"):
                os._exit(0)

    versions = Versions(learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=1)
    versions.addV("returns")
    versions.addV("exits", exit_at_once=True)
    MODEL = Escaping(versions)
    '''
)


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
def test_a_double_forked_grandchild_does_not_outlive_its_version(project, preload):
    if preload:
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\npreload = ["wave"]\n')
    project.script("a.py", DOUBLE_FORK)
    project.queue(["a.py"])
    project.queue(["a.py"], test=True)
    result = project.run("-r")
    assert [r["status"] for r in project.results()] == ["finished", "failed"], result.output  # exits: no result
    tested = project.run()
    assert tested.returncode == 1  # test mode stops at "exits", which reported nothing
    grandchildren = [c["pid"] for c in project.calls("grandchild")]
    assert len(grandchildren) == 4
    assert gone_within(grandchildren, 5), "a grandchild that left by fork, setsid, fork survived its version"


def test_a_keeper_is_the_subreaper_of_what_its_worker_leaves(tmp_path):
    # prctl is called through ctypes' C half, not ctypes (which costs every child 7-10 ms):
    # read the flag back through ctypes itself.
    code = (
        "import ctypes\n"
        "from mlpipeline.child.keeper import adopt_orphans\n"
        "flag = ctypes.c_int(-1)\n"
        "adopt_orphans()\n"
        "ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER\n"
        "print(flag.value)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == "1", done.stderr
