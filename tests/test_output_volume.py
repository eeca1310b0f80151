"""Issue 21: a version's output reaches log-<host> whole and in order however fast it prints,
with and without a preload, while two daemons' versions print into one log."""
import re

import pytest
from conftest import versions_code

LOUD = '''
import sys
class Loud(Counting):
    def train_model(self, input_fn, steps):
        name = self.current_version["name"]
        write = sys.stdout.write
        for step in range(self.current_version["lines"]):
            write("%s step %d loss %f\\n" % (name, step, 1.0 / (step + 1)))
        sys.stdout.flush()
        print("tail without newline", end="")
'''


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["plain", "preload"])
def test_a_million_lines_reach_the_log_whole_in_order_and_prefixed(project, preload):
    if preload:
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\npreload = ["json"]\nworkers = 2\n')
    else:
        project.write("mlp.config", '[MLP]\nmodels_dir = "models"\nworkers = 2\n')
    code = versions_code('versions.addV("a", lines=1000000)', 'versions.addV("b", lines=200000, model_dir_suffix="b")')
    project.script("loud.py", code.replace("MODEL = Counting(", LOUD + "\nMODEL = Loud("))
    project.queue(["loud.py"])
    result = project.run("-r", timeout=300)
    assert result.returncode == 0, result.output[-2000:]
    expected = {"a": 0, "b": 0}
    line = re.compile(r"^\S+ OUT loud\.py:(a|b) (a|b) step (\d+) loss \S+$")
    tails = 0
    with open(next(project.outputs.glob("log-*")), encoding="utf-8") as log:
        for text in log:
            if " OUT " not in text:
                continue
            if text.rstrip("\n").endswith(" tail without newline"):
                tails += 1
                continue
            found = line.match(text.rstrip("\n"))
            assert found is not None, text
            label, name, step = found.group(1), found.group(2), int(found.group(3))
            assert label == name and step == expected[name], text  # whole, its own version's, in order
            expected[name] += 1
    assert expected == {"a": 1000000, "b": 200000} and tails == 2
