"""SPEC 6: preload. Children forked from a server that imported the modules, and every promise
of plain children kept: output, crashes, signals, timeouts, nothing outliving the daemon."""
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from conftest import alive, kill_tree, versions_code


def preloading(project, modules='["wave"]', **keys):
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\npreload = {modules}\n{extra}')


def test_versions_start_from_the_preloaded_server(project):
    preloading(project)
    project.script("a.py", versions_code('versions.addV("v1", print_lines=2)', 'versions.addV("v2")'))
    project.queue(["a.py"])
    project.queue(["a.py"], test=True)
    result = project.run("-r")
    assert result.returncode == 0, result.output
    daemon_pid = project.journal()[0]["pid"]
    for call in project.calls("pre"):
        assert call["wave_preloaded"]  # imported before the fork, not by the script
        assert call["parent"] != daemon_pid  # forked by the server, not started by the daemon
    assert " OUT a.py:v1 hello from v1" in project.log_text()
    assert all(r["status"] == "finished" for r in project.results())
    dry = project.run()  # test mode preloads too
    assert dry.returncode == 0, dry.output
    assert all(call["wave_preloaded"] for call in project.calls("pre"))


def test_without_preload_nothing_is_preloaded(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    assert project.run("-r").returncode == 0
    assert not project.calls("pre")[0]["wave_preloaded"]


def test_a_module_that_fails_to_preload_is_one_warning(project):
    preloading(project, modules='["wave", "no_such_module_here"]')
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 0, result.output
    warnings = [line for line in project.log_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "preload: no_such_module_here failed to import" in warnings[0]
    assert project.calls("pre")[0]["wave_preloaded"]


def test_crashes_timeouts_and_exit_codes_under_preload(project):
    preloading(project, version_timeout=3)
    project.script(
        "a.py",
        versions_code(
            'versions.addV("segfault", crash="segfault")',
            'versions.addV("exits", exit_in="train", exit_code=3)',
            'versions.addV("raises", fail_in="train")',
            'versions.addV("hangs", wait_for="never")',
            'versions.addV("fine")',
        ),
    )
    project.queue(["a.py"])
    result = project.run("-r")
    assert result.returncode == 1
    records = {r["version"]: r for r in project.results()}
    assert records["segfault"]["signal"] == "SIGSEGV"
    assert records["exits"]["exit_code"] == 3
    assert "RuntimeError: deliberate failure in train" in records["raises"]["reason"]
    assert records["hangs"]["status"] == "timed_out"
    assert records["fine"]["status"] == "finished" and records["fine"]["cpu_s"] is not None


def test_ctrl_c_under_preload_leaves_nothing_running(project):
    preloading(project, workers=2)
    lines = [f'versions.addV("v{i}", wait_for="never", grandchildren=[True], model_dir_suffix="v{i}")' for i in range(3)]
    project.script("a.py", versions_code(*lines))
    project.queue(["a.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: len(project.calls("grandchild")) == 2, what="both slots busy")
    server = [p for p in psutil.Process(daemon.pid).children() if "mlpipeline.child.preload_server" in " ".join(p.cmdline())]
    assert len(server) == 1
    daemon.send_signal(signal.SIGINT)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 130
    assert [r["status"] for r in project.results()] == ["interrupted", "interrupted"]
    for call in project.calls("train") + project.calls("grandchild"):
        assert not alive(call["pid"])
    assert not alive(server[0].pid)


def test_the_server_dies_with_a_killed_daemon_and_the_cut_off_version_resumes(project):
    preloading(project)
    project.script("a.py", versions_code('versions.addV("slow", sleep_per_step=0.05, epoc_count=10)'))
    project.queue(["a.py"])
    daemon = project.start("-r", "-u")
    checkpoint = project.outputs / "model_ckpts" / "a" / "steps.txt"
    project.wait_for(lambda: checkpoint.exists() and int(checkpoint.read_text() or 0) >= 3, what="some steps")
    server = [p for p in psutil.Process(daemon.pid).children() if "mlpipeline.child.preload_server" in " ".join(p.cmdline())][0]
    version = project.calls("train")[0]["pid"]
    daemon.kill()  # the daemon alone: its server must not stay behind
    daemon.communicate()
    deadline = time.monotonic() + 10
    while alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server.pid)
    kill_tree(version)  # the version, orphaned by the power cut of its daemon
    result = project.run("-r", "-u")
    assert result.returncode == 0, result.output
    assert project.calls("train")[-1]["start"] > 0  # resumed from its checkpoint


# -- preload_scripts: each script imported once, its versions forked from the import ------

IMPORTED_ONCE = '''
import json, os, sys, threading, time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions
import helperlib

IMPORT_PID = os.getpid()
print("imported by", IMPORT_PID)
if os.environ.get("START_A_THREAD_AT_IMPORT") or {thread}:
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()

class Noting(Model):
    def train_model(self, input_fn, steps):
        version = self.current_version
        with open({calls!r}, "a") as calls:
            calls.write(json.dumps({{"hook": "train", "version": version["name"], "pid": os.getpid(),
                                     "import_pid": IMPORT_PID, "factor": helperlib.FACTOR}}) + "\\n")
        if version["edit_helper"]:
            with open(helperlib.__file__, "w") as helper:
                helper.write("FACTOR = 3\\n")
            os.utime(helperlib.__file__, (time.time() + 10, time.time() + 10))
        time.sleep(version["sleep"])

    def evaluate_model(self, input_fn, steps):
        return {{"mse": 0.25}}

versions = Versions(learning_rate=0.1, dataloader=SplitDataLoader([0], [0]), batch_size=1, epoc_count=1, sleep=0.0, edit_helper=False)
{lines}
MODEL = Noting(versions)
'''


def imported_once(project, *lines, thread=False, workers=1):
    project.write("mlp.config", f'[MLP]\nmodels_dir = "models"\npreload_scripts = true\nworkers = {workers}\n')
    project.write("models/helperlib.py", "FACTOR = 2\n")
    code = IMPORTED_ONCE.format(thread=thread, calls=str(project.root / "calls.jsonl"), lines="\n".join(lines))
    project.script("a.py", code, prelude=False)
    project.queue(["a.py"])


def test_with_preload_scripts_versions_fork_from_one_import_that_follows_edits(project):
    # v0 imports the script itself while its script server starts; the 1.5 s sleeps give each
    # server time to be ready before the next version is asked for.
    imported_once(
        project,
        'versions.addV("v0", sleep=1.5)',
        'versions.addV("v1", edit_helper=True)',
        'versions.addV("v2", sleep=1.5)',
        'versions.addV("v3")',
        'versions.addV("v4")',
    )
    result = project.run("-r")
    assert result.returncode == 0, result.output
    assert [r["status"] for r in project.results()] == ["finished"] * 5
    calls = {call["version"]: call for call in project.calls("train")}
    assert calls["v0"]["import_pid"] == calls["v0"]["pid"]
    served = calls["v1"]["import_pid"]
    assert served != calls["v1"]["pid"] and served != calls["v0"]["pid"]
    # v1 changed a module the script imports from beside it: that server is retired, v2
    # imports the script itself while a new one starts, and v3 and v4 come from the new one.
    assert calls["v2"]["import_pid"] == calls["v2"]["pid"] and calls["v2"]["factor"] == 3
    assert calls["v3"]["import_pid"] == calls["v4"]["import_pid"] not in (served, calls["v3"]["pid"])
    assert calls["v3"]["factor"] == calls["v4"]["factor"] == 3
    assert calls["v1"]["factor"] == 2
    assert not alive(served) and not alive(calls["v3"]["import_pid"])
    log = project.log_text()
    for version in calls:  # what the import printed is in every version's lines
        assert f" OUT a.py:{version} imported by " in log
    assert " WARNING " not in log


def test_a_script_whose_import_starts_a_thread_is_imported_by_each_version(project):
    imported_once(project, 'versions.addV("v0", sleep=1.5)', 'versions.addV("v1")', 'versions.addV("v2")', thread=True)
    result = project.run("-r")
    assert result.returncode == 0, result.output
    assert [r["status"] for r in project.results()] == ["finished"] * 3
    assert all(call["import_pid"] == call["pid"] for call in project.calls("train"))
    warnings = [line for line in project.log_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "preload_scripts: a.py is imported by each of its versions: its import started 1 thread(s)" in warnings[0]


def test_a_script_whose_import_fails_in_its_server_is_imported_by_each_version(project):
    # The import needs what only a version's process (or a listing's) has: its events channel.
    imported_once(project, 'os.environ["MLPIPELINE_EVENTS_FD"]', 'versions.addV("v0", sleep=1.5)', 'versions.addV("v1")')
    result = project.run("-r")
    assert result.returncode == 0, result.output
    assert [r["status"] for r in project.results()] == ["finished"] * 2
    assert all(call["import_pid"] == call["pid"] for call in project.calls("train"))
    warnings = [line for line in project.log_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "a.py is imported by each of its versions: its import failed (a.py failed in import: KeyError: 'MLPIPELINE_EVENTS_FD')" in warnings[0]


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_a_version_forked_from_a_script_server_ends_with_its_daemon(project, how):
    imported_once(project, 'versions.addV("v0", sleep=1.5)', 'versions.addV("v1", sleep=600)')
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: len(project.calls("train")) == 2, timeout=60, what="v1 started")
    v1 = project.calls("train")[1]
    assert v1["import_pid"] != v1["pid"]  # forked from the script server
    daemon.send_signal(getattr(signal, how))
    daemon.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while (alive(v1["pid"]) or alive(v1["import_pid"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(v1["pid"]) and not alive(v1["import_pid"])
    if how == "SIGINT":
        assert daemon.returncode == 130
        assert [r["status"] for r in project.results()] == ["finished", "interrupted"]


def test_a_killed_daemons_preload_folder_is_removed_by_the_next_start_and_a_live_one_is_kept(project):
    temp = Path(tempfile.mkdtemp(prefix="mlp-t-", dir="/tmp"))  # a socket's path must stay short
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        folders = {name: temp / f"mlpipeline-preload-{name}" for name in ("refused", "empty", "young", "live")}
        for folder in folders.values():
            folder.mkdir()
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(folders["refused"] / "preload.sock"))  # its server was killed: nobody listens
        dead.close()
        listener.bind(str(folders["live"] / "preload.sock"))
        listener.listen(4)
        (temp / "mlpipeline-preload-a-file").write_text("not a folder")
        hour_ago = time.time() - 3600
        for name in ("refused", "empty", "live"):
            os.utime(folders[name], (hour_ago, hour_ago))
        preloading(project)
        project.script("a.py", versions_code('versions.addV("v1")'))
        project.queue(["a.py"])
        result = project.run("-r", env={"TMPDIR": str(temp)})
        assert result.returncode == 0, result.output
        assert project.calls("pre")[0]["wave_preloaded"]  # this run's own server started there
        left = sorted(path.name for path in temp.iterdir())
        assert left == ["mlpipeline-preload-a-file", "mlpipeline-preload-live", "mlpipeline-preload-young"], left
    finally:
        listener.close()
        shutil.rmtree(temp, ignore_errors=True)
