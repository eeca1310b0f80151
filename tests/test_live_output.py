"""Issue 21: stdout is block-buffered in the worker for speed, yet a line a version prints
reaches log-<host> while the version still runs (people ``tail -f`` it), also from a process
the version forks. The version waits for the test to have seen its line, so a line held back
until the version ends fails the test instead of slowing it."""
import pytest
from conftest import versions_code

WAITING = '''
import os, sys, time
class Waiting(Counting):
    def train_model(self, input_fn, steps):
        seen = os.path.join(os.environ["TEST_DIR"], "seen")
        if self.current_version["fork"]:
            pid = os.fork()
            if pid == 0:
                print("from the forked child", os.getpid())
                deadline = time.monotonic() + 60
                while not os.path.exists(seen) and time.monotonic() < deadline:
                    time.sleep(0.05)
                os._exit(0)
        else:
            print("a line the version printed")
        deadline = time.monotonic() + 60
        while not os.path.exists(seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.current_version["fork"]:
            os.waitpid(pid, 0)
        if not os.path.exists(seen):
            raise RuntimeError("the test never saw the line")
'''


@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
@pytest.mark.parametrize("fork", [False, True], ids=["version", "forked"])
def test_a_printed_line_is_in_the_log_while_the_version_runs(project, preload, fork):
    if preload:
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\npreload = ["json"]\n')
    code = versions_code(f'versions.addV("w", fork={fork})')
    project.script("wait.py", code.replace("MODEL = Counting(", WAITING + "\nMODEL = Waiting("))
    project.queue(["wait.py"])
    expected = "from the forked child" if fork else "a line the version printed"
    daemon = project.start("-r", env={"TEST_DIR": str(project.root)})
    try:
        project.wait_for(lambda: expected in project.log_text(), timeout=30, what="the line in log-<host>")
        assert daemon.poll() is None  # seen while the version ran, not at its end
        (project.root / "seen").write_text("")
        output, _ = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, output[-2000:]
    assert project.log_text().count(expected) == 1


def test_a_line_printed_just_before_os_exit_is_logged(project):
    # Some scripts end with os._exit to skip a slow teardown: what they printed last must not
    # wait in a buffer that os._exit never writes.
    code = versions_code('versions.addV("x")')
    body = """
import os
class Exiting(Counting):
    def train_model(self, input_fn, steps):
        print("the last words")
        os._exit(3)
"""
    project.script("exit.py", code.replace("MODEL = Counting(", body + "\nMODEL = Exiting("))
    project.queue(["exit.py"])
    result = project.run("-r")
    assert result.returncode == 1, result.output[-2000:]  # recorded failed: it exited with 3
    assert "the last words" in project.log_text()
