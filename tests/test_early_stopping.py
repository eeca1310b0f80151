"""Early stopping ([EARLY_STOPPING]): the rules as a table of the pure decision, then real
daemons on real projects: successive halving with one worker, a daemon killed mid-halving,
two daemons, a version added while it runs, a model that cannot resume, a metric never
reported, and what -u, --retry-failed and an edit make of a stopped version."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from conftest import Project

from mlpipeline.execution.early_stopping import (
    Promotion,
    Standing,
    VersionStanding,
    goes_on_while_running,
    moves,
)
from mlpipeline.queue.config import EarlyStoppingSettings

ASHA = EarlyStoppingSettings(metric="loss", grace_steps=10, reduction_factor=3)
MEDIAN = EarlyStoppingSettings(metric="loss", grace_steps=10, rule="median")
P, R, D, N = Standing.PAUSED, Standing.RUNNING, Standing.DONE, Standing.PENDING


def V(name: str, standing: Standing, *rungs: Optional[float], total: int = 100) -> VersionStanding:  # noqa: N802
    return VersionStanding(name, standing, tuple(rungs), total)


# (rule, versions, promoted in order (version, until_step), stopped)
DECISIONS = [
    # Three at rung 0 and one still to come: the best third goes on, nobody is stopped yet.
    (ASHA, [V("a", P, 0.5), V("b", P, 0.3), V("c", P, 0.9), V("d", N)], [("b", 30)], []),
    # All four there: the rung is settled; one (4 // 3) goes on, the rest are stopped.
    (ASHA, [V("a", P, 0.5), V("b", P, 0.3), V("c", P, 0.9), V("d", P, 0.4)], [("b", 30)], ["a", "c", "d"]),
    # One still running to rung 0: the others wait (they may yet be in the best third).
    (ASHA, [V("a", P, 0.5), V("b", P, 0.3), V("c", P, 0.9), V("d", R)], [("b", 30)], []),
    # A version alone, once settled, goes on (at least the best one of a rung does).
    (ASHA, [V("a", P, 0.5)], [("a", 30)], []),
    # The next rung at or past its last step: it goes on to its end.
    (ASHA, [V("a", P, 0.5, 0.4, total=50)], [("a", None)], []),
    # The higher rung first, then the better value; with mode max, higher is better.
    (
        EarlyStoppingSettings(metric="acc", grace_steps=10, reduction_factor=2, mode="max"),
        [V("a", P, 0.5), V("b", P, 0.9), V("c", P, 0.7, 0.8), V("d", D, 0.1, 0.2)],
        [("c", 40), ("b", 20)],  # rungs at 10, 20, 40
        ["a"],
    ),
    # No value at the rung (the metric was not reported): it runs to its end, unjudged.
    (ASHA, [V("a", P, None), V("b", P, 0.3), V("c", N)], [("a", None)], []),
    # Median: better than or as good as the median of the others goes on; once settled, worse stops.
    (MEDIAN, [V("a", P, 0.5), V("b", P, 0.3), V("c", P, 0.9)], [("b", 30), ("a", 30)], ["c"]),
    (MEDIAN, [V("a", P, 0.5), V("b", P, 0.3), V("c", P, 0.9), V("d", N)], [("b", 30), ("a", 30)], []),
]


@pytest.mark.parametrize("settings, versions, promoted, stopped", DECISIONS)
def test_the_halving_decides_from_the_standings(
    settings: EarlyStoppingSettings, versions: List[VersionStanding], promoted: list, stopped: List[str]
) -> None:
    found = moves(settings, versions)
    assert [(promotion.version, promotion.until_step) for promotion in found.promotions] == promoted
    assert sorted(stop.version for stop in found.stops) == stopped
    for stop in found.stops:
        assert f"rung {stop.rung}" in stop.reason and "loss" in stop.reason or "acc" in stop.reason


def test_while_running_the_first_goes_on_and_then_only_the_best_share() -> None:
    assert goes_on_while_running(ASHA, {"a": 0.5}, "a")  # nothing to compare with: as Ray Tune's ASHA
    values = {"a": 0.5, "b": 0.3, "c": 0.9}
    assert [goes_on_while_running(ASHA, values, name) for name in "abc"] == [False, True, False]
    assert [goes_on_while_running(MEDIAN, values, name) for name in "abc"] == [True, True, False]


# -- real daemons -------------------------------------------------------------------------------

SCRIPT = '''
import os, time
from mlpipeline.helper import Model, SplitDataLoader
from mlpipeline.utils import Versions

RESUMES = {resumes}


class Curve(Model):
    """Reports loss = floor + 1 / (1 + step) every step; its checkpoint is the step it reached."""

    def pre_execution_hook(self, version, model_dir, exec_mode):
        super().pre_execution_hook(version, model_dir, exec_mode)
        self.path = os.path.join(model_dir, "step.txt")

    def get_trained_step_count(self):
        if not RESUMES or not os.path.exists(self.path):
            return None
        return int(open(self.path).read())

    def clean_model_dir(self, model_dir):
        if os.path.exists(os.path.join(model_dir, "step.txt")):
            os.remove(os.path.join(model_dir, "step.txt"))

    def train_model(self, input_fn, steps):
        version = self.current_version
        done = self.get_trained_step_count() or 0
        for _ in range(steps):
            time.sleep(version.get("sleep_per_step", 0))
            done += 1
            metrics = {{}} if version.get("silent") else {{"loss": version["floor"] + 1.0 / (1 + done)}}
            if version.get("huge"):
                metrics = {{"loss": 10 ** 400}}  # a whole number no float holds
            self.report(step=done, total=90, **metrics)
            with open(self.path + ".tmp", "w") as handle:
                handle.write(str(done))
            os.replace(self.path + ".tmp", self.path)
            if version.get("hang_at") == done:
                time.sleep(120)  # its checkpoint is at the step: the test kills the daemon now
            if version.get("linger_at") == done:
                time.sleep(2)  # the test stops its daemon now

    def evaluate_model(self, input_fn, steps):
        return {{}}


versions = Versions(dataloader=SplitDataLoader(list(range(90)), [0]), batch_size=1, epoc_count=1, sleep_per_step={sleep})
FLOORS = {floors}
EXTRA = {extra_parameters}
for index, floor in enumerate(FLOORS):
    versions.addV("v%d" % index, floor=floor, model_dir_suffix="v%d" % index, silent=index in {silent}, **EXTRA.get(index, {{}}))
MODEL = Curve(versions, allow_delete_model_dir=True)
'''

FLOORS = [0.5, 0.3, 0.8, 0.2, 0.6, 0.9, 0.4, 0.7, 0.1]  # the best, v8, declared last


def halving_project(
    project: Project,
    floors: Sequence[float] = FLOORS,
    resumes: bool = True,
    sleep: float = 0.0,
    rule: str = "asha",
    silent: Sequence[int] = (),
    extra: str = "",
    extra_parameters: Optional[Dict[int, dict]] = None,
) -> Project:
    project.write(
        "mlp.config",
        f'[MLP]\nmodels_dir = "models"\n{extra}\n[EARLY_STOPPING]\nmetric = "loss"\nrule = "{rule}"\ngrace_steps = 10\nreduction_factor = 3\n',
    )
    project.script(
        "curves.py",
        SCRIPT.format(resumes=resumes, sleep=sleep, floors=list(floors), silent=set(silent) or "()", extra_parameters=extra_parameters or {}),
        prelude=False,
    )
    project.queue(["curves.py"])
    project.queue(["curves.py"], test=True)
    return project


def events(project: Project, version: Optional[str] = None) -> List[dict]:
    return [event for event in project.journal() if version is None or event.get("version") == version]


def final_states(project: Project) -> Dict[str, str]:
    states: Dict[str, str] = {}
    for event in project.journal():
        states[event["version"]] = event["event"]
    return states


def trained_steps(project: Project) -> int:
    return sum((row.get("steps") or {}).get("trained") or 0 for row in project.results())


def test_successive_halving_with_one_worker_keeps_the_best_and_stops_the_rest(project: Project) -> None:
    halving_project(project)
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    assert final_states(project) == {**{f"v{i}": "stopped" for i in range(8)}, "v8": "finished"}
    # 9 versions to rung 0 (10 steps), 3 on to rung 1 (20 more), 1 to its end (60 more).
    assert trained_steps(project) == 9 * 10 + 3 * 20 + 60
    assert [event["rung"] for event in events(project, "v8") if event["event"] == "paused"] == [0, 1]
    stopped = {row["version"]: row for row in project.results() if row["status"] == "stopped"}
    assert stopped["v3"]["early_stopping"]["rung"] == 1 and stopped["v3"]["early_stopping"]["step"] == 30
    assert stopped["v3"]["early_stopping"]["rule"] == "asha"
    assert stopped["v3"]["early_stopping"]["value"] == pytest.approx(0.2 + 1 / 31)
    assert "ranks 2 of 3" in stopped["v3"]["reason"]
    assert stopped["v5"]["early_stopping"]["rung"] == 0 and stopped["v5"]["parameters"]["floor"] == 0.9
    # Every view tells the same: status, compare, output-<host>.
    status = {row["version"]: row for row in json.loads(project.run("status", "--json").stdout)}
    assert status["v3"]["state"] == "stopped" and status["v3"]["rung"] == 1 and status["v3"]["step"] == 30
    assert status["v8"]["state"] == "finished"
    compare = project.run("compare", "--json")
    rows = {row["version"]: row for row in json.loads(compare.stdout)}
    assert rows["curves.py:v3"]["state"] == "stopped" and rows["curves.py:v3"]["steps"] == 30
    assert "curves.py:v3    STOPPED" in project.output_text() and "stopped at step 30 of 90" in project.output_text()
    assert "1 finished, 8 stopped" in result.output


def test_a_daemon_killed_mid_halving_goes_on_from_the_journal(project: Project) -> None:
    halving_project(project, sleep=0.02)
    daemon = project.start("-r")
    project.wait_for(lambda: sum(event["event"] == "paused" for event in events(project)) >= 6, timeout=60, what="six pauses")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    time.sleep(0.5)
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    assert final_states(project) == {**{f"v{i}": "stopped" for i in range(8)}, "v8": "finished"}
    # No version went to rung 0 twice: the pauses before the kill count, read from the journal.
    for index in range(9):
        pauses = [event["rung"] for event in events(project, f"v{index}") if event["event"] == "paused"]
        assert pauses.count(0) == 1, (index, pauses)
    # What the killed daemon's run was training resumed from its checkpoint, not from step 0.
    assert trained_steps(project) <= 9 * 10 + 3 * 20 + 60 + 10


def test_two_daemons_on_one_folder_make_one_set_of_decisions(project: Project) -> None:
    halving_project(project, sleep=0.005)
    first, second = project.start("-r", "-u"), project.start("-r", "-u")
    outputs = [daemon.communicate(timeout=120)[0] for daemon in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert final_states(project) == {**{f"v{i}": "stopped" for i in range(8)}, "v8": "finished"}
    for index in range(9):
        ends = [event["event"] for event in events(project, f"v{index}") if event["event"] in ("stopped", "finished")]
        assert len(ends) == 1, (index, ends)  # stopped (or finished) once, by one daemon


def test_a_version_added_to_the_queue_while_the_halving_runs_joins_it_at_the_first_rung(project: Project) -> None:
    halving_project(project, sleep=0.02)
    project.queue([f"curves.py:v{i}" for i in range(8)])  # v8, the best, not queued yet
    daemon = project.start("-r", "-u")
    project.wait_for(lambda: sum(event["event"] == "paused" for event in events(project)) >= 3, timeout=60, what="three pauses")
    project.queue(["curves.py"])  # now all nine
    output, _ = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, output
    assert [event["rung"] for event in events(project, "v8") if event["event"] == "paused"][:1] == [0]
    assert final_states(project)["v8"] == "finished"


def test_a_model_that_cannot_resume_is_stopped_while_it_runs_never_paused_again(project: Project) -> None:
    halving_project(project, resumes=False, sleep=0.01)
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    states = final_states(project)
    assert states["v8"] == "finished" and "stopped" in states.values()
    # Only the first run found out, at its pause, that its model cannot resume: it ran again, watched.
    assert [event["version"] for event in events(project) if event["event"] == "paused"] == ["v0"]
    assert all(event.get("watched") for event in events(project) if event["event"] == "stopped")
    assert "while it ran" in project.log_text()
    assert "Traceback" not in project.log_text()


def test_a_version_that_never_reports_the_metric_runs_to_its_end_with_a_warning(project: Project) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8], silent=[0])
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    assert final_states(project)["v0"] == "finished"
    assert "curves.py:v0 reported no number for 'loss' by rung 0; it is not judged, and runs to its end" in result.output
    assert "reported no number for 'loss'" in project.log_text()


def test_stopped_is_final_for_u_and_retry_failed_and_an_edit_reruns_it(project: Project) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8])
    assert project.run("-r", timeout=120).returncode == 0
    before = len(project.results())
    result = project.run("-r", "-u", "--retry-failed", timeout=60)
    assert result.returncode == 0 and len(project.results()) == before  # nothing ran again
    script = project.models / "curves.py"
    script.write_text(script.read_text() + "\n# edited\n")
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    states = final_states(project)
    assert states == {"v0": "stopped", "v1": "finished", "v2": "stopped"}
    assert len({row["sha256"] for row in project.results()}) == 2  # a second halving, at the new content


def test_the_median_rule_stops_what_is_worse_than_the_others(project: Project) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8, 0.2], rule="median")
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    states = final_states(project)
    assert states["v3"] == "finished" and states["v2"] == "stopped"
    reasons = [row["reason"] for row in project.results() if row["status"] == "stopped"]
    assert reasons and all("median" in reason for reason in reasons)


def test_a_bad_table_is_refused_at_start_and_test_mode_says_it_judges_nothing(project: Project) -> None:
    halving_project(project)
    config = project.root / "mlp.config"
    config.write_text(config.read_text().replace('rule = "asha"', 'rule = "hyperband"'))
    result = project.run("-r")
    assert result.returncode == 2 and 'mlp.config:6: rule must be "asha" or "median"' in result.output
    config.write_text(config.read_text().replace('rule = "hyperband"', 'rule = "asha"').replace('metric = "loss"', "metric = 3"))
    result = project.run("-r")
    assert result.returncode == 2 and "mlp.config:5: 'metric' must be a string" in result.output
    config.write_text(config.read_text().replace("metric = 3", 'metric = "loss"'))
    result = project.run(timeout=60)
    assert result.returncode == 0, result.output
    assert result.output.count("[EARLY_STOPPING] judges them in execution mode") == 1
    assert "all 9 versions passed" in result.output


def test_paused_versions_run_to_their_end_once_early_stopping_is_off(project: Project) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8, 0.2], sleep=0.02)
    daemon = project.start("-r")
    project.wait_for(lambda: sum(event["event"] == "paused" for event in events(project)) >= 3, timeout=60, what="three pauses")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    paused = [version for version, state in final_states(project).items() if state == "paused"]
    assert paused
    project.write("mlp.config", '[MLP]\nmodels_dir = "models"\n')  # [EARLY_STOPPING] taken out
    time.sleep(0.5)
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    states = final_states(project)
    assert all(states[version] == "finished" for version in paused), states
    for version in paused:  # resumed from the rung, not from step 0
        last = [row for row in project.results() if row["version"] == version][-1]
        assert last["steps"]["already_trained"] == 10 and last["steps"]["trained"] == 80


def test_a_run_cut_off_at_its_rung_is_judged_from_its_models_history(project: Project) -> None:
    # v1 checkpoints step 30 (rung 1), and its daemon is killed there: the run that resumes it
    # trains nothing, and is judged by where its model's history leaves it, not promoted unjudged.
    halving_project(project, extra_parameters={1: {"hang_at": 30}})
    daemon = project.start("-r")
    step = project.models / "outputs" / "model_ckpts" / "curves-v1" / "step.txt"
    project.wait_for(lambda: step.exists() and step.read_text() == "30", timeout=60, what="v1 at step 30")
    time.sleep(1.5)  # its reports reach the history (flushed every second)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    time.sleep(0.5)
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    assert "it is not judged" not in result.output
    assert final_states(project) == {**{f"v{i}": "stopped" for i in range(8)}, "v8": "finished"}
    pause = [event for event in events(project, "v1") if event["event"] == "paused" and event["rung"] == 1][-1]
    assert pause["value"] == pytest.approx(0.3 + 1 / 31)


def test_a_history_that_lost_its_last_reports_before_the_rung_does_not_judge_it(project: Project) -> None:
    # A daemon killed at once loses up to a second of reports: the history's last value, from a
    # step before the rung, was recorded as the value at the rung, and the true best stopped.
    halving_project(project, extra_parameters={1: {"hang_at": 30}})
    daemon = project.start("-r")
    step = project.models / "outputs" / "model_ckpts" / "curves-v1" / "step.txt"
    project.wait_for(lambda: step.exists() and step.read_text() == "30", timeout=60, what="v1 at step 30")
    time.sleep(1.5)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    history = step.parent / ".mlpipeline" / "metrics.jsonl"
    kept = [line for line in history.read_text().splitlines() if json.loads(line)["step"] < 25]
    history.write_text("\n".join(kept) + "\n")  # as if the kill came before the last reports were written
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    pause = [event for event in events(project, "v1") if event["event"] == "paused" and event["rung"] == 1][-1]
    # Not its loss at step 24 (0.3 + 1/25): the value it had at its last rung, as documented.
    assert pause["value"] == pytest.approx(0.3 + 1 / 11), pause


def test_a_number_too_large_for_a_float_is_no_value_and_breaks_nothing(project: Project) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8, 0.2], extra_parameters={1: {"huge": True}})
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output + project.log_text()
    assert final_states(project)["v1"] == "finished"  # no value to judge it by: it ran to its end
    assert "curves.py:v1 reported no number for 'loss' by rung 0" in result.output


def test_pause_cancel_and_only_during_a_halving(project: Project) -> None:
    halving_project(project, sleep=0.01)
    daemon = project.start("-r")
    project.wait_for(lambda: sum(event["event"] == "stopped" for event in events(project)) >= 6, timeout=60, what="rung 0 settled")
    assert project.run("pause").returncode == 0
    time.sleep(3)
    assert daemon.poll() is None  # paused versions wait to be promoted: the daemon waits for resume
    assert project.run("resume").returncode == 0
    output, _ = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, output
    assert final_states(project)["v8"] == "finished"
    # A second halving after an edit, cut off after five pauses, as v5 reaches its rung unseen:
    # its daemon, stopped (SIGSTOP) before v5 reached the rung, is killed once v5 has paused.
    # Then cancel a paused version, and run v5 alone with --only: its resumed run trains
    # nothing, and it is judged against the others' values by the reports its pause saved.
    first = events(project)[0]["sha256"]
    script = project.models / "curves.py"
    script.write_text(script.read_text().replace("EXTRA = {}", 'EXTRA = {5: {"linger_at": 5}}'))
    step = project.models / "outputs" / "model_ckpts" / "curves-v5" / "step.txt"
    run_record = step.parent / ".mlpipeline" / "run.json"
    daemon = project.start("-r", "-u")
    project.wait_for(
        lambda: sum(event["event"] == "paused" and event["sha256"] != first for event in events(project)) >= 5
        and step.exists() and step.read_text() == "5",
        timeout=60, what="five pauses, and v5 at step 5",
    )  # fmt: skip
    os.kill(daemon.pid, signal.SIGSTOP)
    project.wait_for(lambda: "paused_at" in run_record.read_text(), timeout=30, what="v5 paused")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    assert final_states(project)["v0"] == "paused" and final_states(project)["v5"] == "started"
    cancel = project.run("cancel", "curves.py:v0")
    assert cancel.returncode == 0 and "curves.py:v0 (paused at a rung) recorded as cancelled" in cancel.output
    assert final_states(project)["v0"] == "cancelled"
    paused, cancelled = events(project, "v0")[-2:]
    assert cancelled["attempt"] == paused["attempt"] and cancelled["run_id"] not in (None, paused["run_id"])  # an end of its own
    # results.jsonl and output-<host> say so too (they said "paused" for good).
    row = [row for row in project.results() if row["version"] == "v0"][-1]
    assert (row["status"], row["run_id"]) == ("cancelled", cancelled["run_id"]) and "while paused at an early-stopping rung" in row["reason"]
    assert "curves.py:v0    CANCELLED" in project.output_text()
    result = project.run("-r", "-u", "--only", "curves.py:v5", timeout=60)  # floor 0.9: the worst
    assert result.returncode == 0, result.output
    assert "reported no number" not in result.output and project.results()[-1]["steps"]["trained"] == 0
    # Judged against v1 to v4 (v0, cancelled, carries no values now): the last of five.
    assert final_states(project)["v5"] == "stopped" and "ranks 5 of 5" in project.results()[-1]["reason"]
    assert project.results()[-1]["early_stopping"]["value"] == pytest.approx(0.9 + 1 / 11)


@pytest.mark.parametrize("rungs", ['"0.39"', '{"a": 1}', "[1e999]", "[0.39, 0.1, 0.1]", "[" + ", ".join(["0.1"] * 300) + "]"])
def test_rung_values_the_journal_cannot_hold_are_said_and_counted_nowhere(project: Project, rungs: str) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8, 0.2], sleep=0.02)
    daemon = project.start("-r")
    project.wait_for(lambda: sum(event["event"] == "paused" for event in events(project)) >= 2, timeout=60, what="two pauses")
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    journal = project.outputs / "history.jsonl"
    lines = journal.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"event":"paused"' in line and '"version":"v0"' in line)
    event = json.loads(lines[index])
    lines[index] = json.dumps(event).replace(json.dumps(event["rungs"]), rungs)  # the text as written, JSON or not
    journal.write_text("\n".join(lines) + "\n")
    time.sleep(0.5)
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output + project.log_text()
    assert "curves.py:v0 its values at the rungs in the journal (history.jsonl) cannot be read" in result.output
    states = final_states(project)
    assert states["v0"] == "finished" and states["v3"] == "finished"  # v0 unjudged; the true best still wins


def _paused_with_one_hanging(project: Project) -> "subprocess.Popen":
    """A daemon with v0 to v2 paused at rung 0 and v3 hanging before it (so the rung is not
    settled, and nothing is stopped yet)."""
    halving_project(project, floors=[0.5, 0.3, 0.8, 0.2], extra_parameters={3: {"hang_at": 5}})
    daemon = project.start("-r", "-u")
    hanging = project.outputs / "model_ckpts" / "curves-v3" / "step.txt"
    project.wait_for(
        lambda: sum(event["event"] == "paused" for event in events(project)) == 3 and hanging.exists() and hanging.read_text() == "5",
        timeout=60, what="three pauses and v3 hanging at step 5",
    )  # a resumed run of v3 goes on from step 5, and hangs no more
    return daemon


def test_values_taken_with_other_settings_judge_nothing_after_an_edit(project: Project) -> None:
    daemon = _paused_with_one_hanging(project)
    daemon.kill()
    daemon.wait(timeout=30)
    assert all("rung_basis" in event for event in events(project) if event["event"] == "paused")
    # The metric edited while they are paused: the values at rung 0 are loss's, no acc's.
    project.write("mlp.config", (project.root / "mlp.config").read_text().replace('metric = "loss"', 'metric = "acc"'))
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    for version in ("v0", "v1", "v2"):
        assert f"curves.py:{version} was paused at a rung of other [EARLY_STOPPING] settings" in result.output
    assert "stopped" not in [event["event"] for event in events(project)]  # no stop names a metric never reported
    assert set(final_states(project).values()) == {"finished"}


def test_versions_sharing_a_model_dir_are_not_judged(project: Project) -> None:
    halving_project(project, floors=[0.5, 0.3, 0.8])
    script = project.models / "curves.py"
    script.write_text(script.read_text().replace('model_dir_suffix="v%d" % index, ', ""))
    result = project.run("-r", timeout=120)
    assert result.returncode == 0, result.output
    assert "curves.py: versions share a model_dir (give each a MODEL_DIR_SUFFIX); early stopping cannot judge them" in result.output
    assert [event["event"] for event in events(project) if event["event"] in ("paused", "stopped")] == []


def test_a_cancel_read_after_its_version_paused_records_it_cancelled(project: Project) -> None:
    from mlpipeline.records.control import CANCEL, append_request

    daemon = _paused_with_one_hanging(project)
    # As when `mlpipeline cancel` saw v0 still running, and its run paused before the daemon read the request.
    append_request(project.outputs, CANCEL, "curves.py", "v0")
    project.wait_for(lambda: final_states(project)["v0"] == "cancelled", timeout=30, what="v0 recorded cancelled")
    daemon.kill()
    daemon.wait(timeout=30)
    cancelled = events(project, "v0")[-1]
    assert cancelled["reason"].startswith("cancelled by `mlpipeline cancel curves.py:v0`") and cancelled["reason"].endswith("while paused at a rung")
    assert "curves.py:v0 cancelled by" in project.log_text()
    assert [row["status"] for row in project.results() if row["version"] == "v0"][-1] == "cancelled"
    # Its value at the rung counts no more (it could take the one promotion): v1 to v3 are judged.
    result = project.run("-r", "-u", timeout=120)
    assert result.returncode == 0, result.output
    rows = {row["version"]: row for row in project.results() if row["status"] == "stopped"}
    assert sorted(rows) == ["v1", "v2"] and "ranks 2 of 3" in rows["v1"]["reason"] and "ranks 3 of 3" in rows["v2"]["reason"], rows
    assert final_states(project) == {"v0": "cancelled", "v1": "stopped", "v2": "stopped", "v3": "finished"}
    said = project.run("cancel", "curves.py").output  # what has ended is said as ended, not queued
    assert "cancelled already: curves.py:v0" in said and "stopped by early stopping already (for good): curves.py:v1, curves.py:v2" in said, said
    assert "finished in an earlier run (-u skips it): curves.py:v3" in said and "queued" not in said
