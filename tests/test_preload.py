"""SPEC 6: preload. Children forked from a server that imported the modules, and every promise
of plain children kept: output, crashes, signals, timeouts, nothing outliving the daemon."""
import signal
import time

import psutil

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
    server = [p for p in psutil.Process(daemon.pid).children() if "mlpipeline.executors.preload_server" in " ".join(p.cmdline())]
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
    server = [p for p in psutil.Process(daemon.pid).children() if "mlpipeline.executors.preload_server" in " ".join(p.cmdline())][0]
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
