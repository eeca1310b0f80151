"""Nothing hangs, nothing grows without bound, nothing escapes models_dir or outputs/: scripts
that hang at import, versions that print without end, links that point elsewhere, and names
that are not names."""
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time

import pytest
from conftest import REPO, alive, processes_of_runs, versions_code
from test_unwritable import on_a_full_disk

HANGS_AT_IMPORT = "import time\nwhile True:\n    time.sleep(1)\n"


def test_a_script_whose_import_hangs_fails_after_listing_timeout_and_the_queue_goes_on(project):
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nlisting_timeout = 2\n')
    (project.models / "hangs.py").write_text(HANGS_AT_IMPORT)
    project.script("after.py", versions_code('versions.addV("v1")'))
    project.queue(["hangs.py", "after.py"])
    result = project.run("-r", timeout=60)
    assert result.returncode == 1, result.output
    assert "hangs.py: listing its versions took longer than listing_timeout (2 s)" in result.output
    assert [(r["script"], r["status"]) for r in project.results()] == [("hangs.py", "failed"), ("after.py", "finished")]
    assert "Traceback" not in result.output
    # Test mode, too, is bounded.
    project.queue(["hangs.py", "after.py"], test=True)
    tested = project.run(timeout=60)
    assert tested.returncode == 1 and "listing_timeout" in tested.output


def test_a_daemon_killed_while_a_script_hangs_at_import_leaves_nothing_behind(project):
    (project.models / "hangs.py").write_text(f"import os\nopen('pid', 'w').write(str(os.getpid()))\n{HANGS_AT_IMPORT}")
    project.queue(["hangs.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: (project.root / "pid").exists() and (project.root / "pid").read_text(), what="the import")
    daemon.kill()
    daemon.communicate()
    worker = int((project.root / "pid").read_text())
    deadline = time.monotonic() + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker)


LOUD = '''
class Loud(Counting):
    def train_model(self, input_fn, steps):
        record(hook="train", version=self.current_version["name"], steps=steps, start=0, pid=os.getpid(), t=time.time())
        out = sys.stdout.buffer
        out.write(b"start:" + b"x" * (50 * 2**20) + b":end\\n")  # one 50 MB line
        for step in range(2000):  # a bar redrawn without a newline: 100 MB in all
            out.write(b"\\r" + (b"%5d " % step) + b"#" * (50 * 2**10))
        out.write(b"\\n")
        out.flush()

versions = Versions(learning_rate=0.1, dataloader=Data(), batch_size=10, epoc_count=1)
versions.addV("loud")
versions.addV("holds", wait_for="go")
MODEL = Loud(versions, allow_delete_model_dir=True)
'''


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak from /proc")
def test_the_daemons_memory_stays_bounded_whatever_a_version_prints(project):
    project.script("a.py", LOUD)
    project.queue(["a.py"])
    daemon = project.start("-r", stdout=open(os.devnull, "w"))
    project.wait_for(lambda: any(c["version"] == "holds" for c in project.calls("train")), timeout=120, what="the loud version to end")
    peak = peak_rss_mib(daemon.pid)  # the daemon alone, its high-water mark so far
    (project.root / "go").touch()
    daemon.wait(timeout=60)
    assert daemon.returncode == 0
    assert peak < 100, f"the daemon peaked at {peak:.0f} MiB"
    log = project.log_text()
    line = next(line for line in log.splitlines() if "OUT a.py:loud start:" in line)
    assert len(line) < 100_000 and "more bytes of this line not kept" in line
    assert "#####" in log.split("OUT a.py:loud start:")[1]  # the bar's last redraw is there


def test_a_link_out_of_models_dir_is_never_imported(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = elsewhere / "outside.py"
    outside.write_text(MODEL_AT(versions_code('versions.addV("v1")')))
    (project.models / "linked.py").symlink_to(outside)
    project.script("inside.py", versions_code('versions.addV("v1")'))
    project.queue([], blacklist=[])  # blacklist mode: every script under models_dir
    result = project.run("-r")
    assert result.returncode == 1, result.output
    assert [c["script"] for c in project.calls("train")] == ["inside.py"]
    assert not (project.root / "imported-outside").exists()
    assert f"linked.py is a link to {outside}, outside models_dir" in result.output
    assert [(r["script"], r["status"]) for r in project.results()] == [("inside.py", "finished"), ("linked.py", "failed")]

    # A whitelisted script replaced by such a link while the queue runs.
    (project.models / "linked.py").unlink()
    project.script("a.py", versions_code('versions.addV("v1", wait_for="go")'))
    project.script("b.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "b.py"])
    daemon = project.start("-r")
    project.wait_for(lambda: any(c["script"] == "a.py" for c in project.calls("train")), what="a.py to run")
    (project.models / "b.py").unlink()
    (project.models / "b.py").symlink_to(outside)
    (project.root / "go").touch()
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 1, output
    assert not (project.root / "imported-outside").exists()
    assert "b.py is a link to" in output


def MODEL_AT(code):
    # Marks its import, so that the test can tell it was never imported.
    return "open('imported-outside', 'w').close()\n" + code


@pytest.mark.parametrize(
    "suffix, problem",
    [("'a\\x00b'", "holds a control character"), ("'x' * 10000", "a folder name holds at most 255")],
    ids=["NUL", "10 KB"],
)
def test_a_suffix_that_cannot_name_a_folder_fails_its_version_and_the_queue_goes_on(project, suffix, problem):
    project.script("a.py", versions_code(f'versions.addV("bad", model_dir_suffix={suffix})', 'versions.addV("good", model_dir_suffix="good")'))
    project.queue(["a.py"])
    for _ in range(2):  # and again, on a later run
        result = project.run("-r")
        assert result.returncode == 1, result.output
        assert "Traceback" not in result.output
        assert "a.py:bad: MODEL_DIR_SUFFIX" in result.output and problem in result.output
    assert [(r["version"], r["status"]) for r in project.results()] == [("bad", "failed"), ("good", "finished")] * 2


def test_two_scripts_that_name_one_model_dir_never_share_it(project):
    project.script("a.py", versions_code('versions.addV("v1", model_dir_suffix="b")'))
    project.script("a-b.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py", "a-b.py"])
    result = project.run("-r")
    assert result.returncode == 1, result.output
    assert [c["script"] for c in project.calls("train")] == ["a.py"]
    record = {r["script"]: r for r in project.results()}["a-b.py"]
    assert record["status"] == "failed" and "is a.py's" in record["reason"]
    again = project.run("-r", "--only", "a-b.py")  # a later run: the folder's run record says whose it is
    assert again.returncode == 1 and "is a.py's" in again.output


def test_a_host_name_that_is_a_path_is_refused_at_start(project):
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    result = project.run("-r", env={"MLPIPELINE_HOSTNAME": "../../x"})
    assert result.returncode == 2
    assert "MLPIPELINE_HOSTNAME='../../x' cannot be part of a file name" in result.output
    assert not list(project.root.parent.glob("**/*x.lock")) and not (project.root.parent / "x").exists()
    assert project.calls() == []


@pytest.mark.parametrize("beat", ["inf", "nan", "abc", "0", "-1", "1e9"])
def test_a_heartbeat_interval_that_cannot_be_is_refused_at_start(project, beat):
    # inf killed the heartbeat thread with a traceback (its claims were then taken over), nan
    # beat in a busy loop; each was taken without a word.
    project.script("a.py", versions_code('versions.addV("v1")'))
    project.queue(["a.py"])
    result = project.run("-r", env={"MLPIPELINE_HEARTBEAT_S": beat})
    assert result.returncode == 2, result.output
    assert result.output == f"error: MLPIPELINE_HEARTBEAT_S='{beat}' must be a number of seconds from 0.05 to 3600\n"
    assert project.calls() == []


# Stays to tell the daemon's exit status: the group's signal is for the daemon and its reader,
# which dies of it as `tee` or `less` would, so that the daemon's stdout becomes a broken pipe.
PIPED_TO_A_READER = r"""
import signal, subprocess, sys
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: None)
reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
daemon = subprocess.Popen(sys.argv[1:], stdout=reader.stdin)
reader.stdin.close()
print("spawned", flush=True)
print("exit status", daemon.wait(), flush=True)
"""

# When, after the daemon was started, the signal comes: seconds (Python's own start, the imports,
# the listing of a.py's versions, the first version's start), or the moment an event appears:
# the first journal line (the claim), the first version started, the first one finished, the
# daemon's closing log line (its exit under way: exit 0 if it had finished).
MOMENTS = [0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.13, 0.17, 0.22, 0.28, 0.35, 0.45, 0.6, 0.8, 1.0]
MOMENTS += ["claimed", "started", "finished", "ended"] * 2


def _moment_came(project, moment):
    if moment == "ended":
        return "execution mode ended" in project.log_text()
    return any(event["event"] == moment for event in project.journal())


def test_a_stop_signal_at_any_moment_of_a_run_ends_it_with_130_or_143_and_never_a_traceback(project):
    # Ctrl-C as a terminal sends it, to the whole foreground process group: the daemon, and on
    # every third run a reader of its stdout (`| tee`), which dies of it too. Without site (-S),
    # so that Python's own start-up, which runs no code of ours and can print its own traceback
    # for a Ctrl-C or end by the signal before any handler is in place, is over in milliseconds;
    # the packages come by PYTHONPATH. The shell reports an end by the signal as 130 or 143 too.
    project.script("a.py", versions_code('versions.addV("v1", sleep_per_step=0.1)', 'versions.addV("v2")'))
    project.queue(["a.py"])
    paths = sysconfig.get_paths()
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), paths["purelib"], paths["platlib"]])}
    command = [sys.executable, "-S", "-m", "mlpipeline", "-C", str(project.root), "-r"]
    for index, moment in enumerate(MOMENTS):
        signum = (signal.SIGINT, signal.SIGTERM)[index % 2 if isinstance(moment, float) else index // 4 % 2]
        piped = index % 3 == 1
        shutil.rmtree(project.outputs, ignore_errors=True)
        prefix = [sys.executable, "-c", PIPED_TO_A_READER, *command] if piped else command
        daemon = project.start(env=env, prefix=prefix, args_only=True, start_new_session=True)
        if piped:
            assert daemon.stdout.readline() == "spawned\n"
        if isinstance(moment, float):
            time.sleep(moment)
        else:
            project.wait_for(lambda: _moment_came(project, moment) or daemon.poll() is not None, timeout=60, what=moment)
        os.killpg(daemon.pid, signum)
        output, _ = daemon.communicate(timeout=60)
        returncode = daemon.returncode
        if piped:
            output, _, status = output.rpartition("exit status ")
            returncode = int(status)
        events = project.journal()
        ends = [(row["version"], row["status"], row.get("reason")) for row in project.results()]
        seen = (moment, signum.name, "piped" if piped else "plain", returncode, ends, output[-3000:])
        if "Traceback" in output:
            # Python's own, from before any code of ours ran: nothing of mlpipeline's in it, nothing written.
            assert "mlpipeline" not in output and not events, seen
            continue
        assert returncode in (0, 128 + signum, -signum), seen
        if returncode < 0:
            assert not events, seen  # ended by the signal before a handler of ours was in place
        # Whatever was started is recorded: interrupted (to resume with -u), or finished.
        last = {}
        for event in events:
            last[event["run_id"]] = event["event"]
        assert set(last.values()) <= {"interrupted", "finished"}, seen
        if returncode == 0:
            # Done before the signal came, which a signal at a version's claim, start or end
            # never is (the queue has two): a signal swallowed somewhere would end so.
            assert moment not in ("claimed", "started", "finished"), seen
            assert sorted(r["version"] for r in project.results() if r["status"] == "finished") == ["v1", "v2"], seen
        project.wait_for(lambda: not processes_of_runs(project.outputs), timeout=10, what=f"nothing left running {seen[:3]}")


@pytest.mark.parametrize("words", [["--help"], ["--version"], ["status", "--help"]])
def test_help_that_reaches_nobody_is_no_success(project, words):
    # argparse drops what it cannot write and exits 0; `mlpipeline --help > /dev/full` is `echo`'s 1.
    with open("/dev/full", "w") as full:
        daemon = project.start(*words, stdout=full, stderr=subprocess.PIPE)
        _, errors = daemon.communicate(timeout=60)
    assert daemon.returncode == 1 and errors == "mlpipeline: standard output cannot be written (No space left on device)\n", errors
    assert project.run(*words).returncode == 0


def test_a_usage_error_that_reaches_nobody_is_still_a_usage_error(project):
    with open("/dev/full", "w") as full:
        daemon = project.start("--no-such-option", stdout=subprocess.PIPE, stderr=full)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 2


def test_stdout_on_a_full_disk_costs_the_console_only(project, tmp_path):
    project.script("a.py", versions_code('versions.addV("v1")', 'versions.addV("v2")'))
    project.queue(["a.py"])
    with open("/dev/full", "w") as full:
        daemon = project.start("-r", stdout=full, stderr=subprocess.PIPE)
        _, errors = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, errors
    assert "Traceback" not in errors and "the console cannot be written (No space left on device)" in errors
    assert [r["status"] for r in project.results()] == ["finished", "finished"]
    # With the records on a full disk too, the exit code says that they are, without a traceback.
    (project.outputs / "results.jsonl").unlink()
    with on_a_full_disk(project.outputs / "results.jsonl", tmp_path), open("/dev/full", "w") as full:
        daemon = project.start("-r", stdout=full, stderr=subprocess.PIPE)
        _, errors = daemon.communicate(timeout=60)
    assert daemon.returncode == 2, errors
    assert "Traceback" not in errors
