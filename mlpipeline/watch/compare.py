"""``mlpipeline compare``: one row per version, its parameters that differ from the others',
its evaluations, the last (and best) value of each metric it reported, steps, duration, state."""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mlpipeline.records.files import json_text, number
from mlpipeline.records.text import one_line
from mlpipeline.watch.console import ConsoleView
from mlpipeline.watch.runs import RecordedRun

LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|rmse|nll|perplexity|ppl|wer|cer|cost|distance|regret", re.I)
"""A metric whose name matches is best at its lowest, any other at its highest."""

_FIXED_FIRST = ("version", "state")
_FIXED_LAST = ("steps", "duration_s")
_NOT_HYPERPARAMETERS = ("order", "model_dir_suffix")  # where and when a version ran, not what it is
_TAKEN = _FIXED_FIRST + _FIXED_LAST + ("eval_train", "eval_test")
_PREFIXES = ("eval_train.", "eval_test.", "last.", "best.", "param.")


def lower_is_better(metric: str) -> bool:
    return bool(LOWER_IS_BETTER.search(metric))


def comparison(runs: Sequence[RecordedRun], best: bool = False) -> Tuple[List[str], List[Dict[str, Any]]]:
    """The columns and the rows of the comparison of ``runs``."""
    rows: List[Dict[str, Any]] = []
    parameters: List[Dict[str, Any]] = []
    for run in runs:
        record = run.row
        row: Dict[str, Any] = {"version": run.label, "state": run.state}
        for side in ("eval_train", "eval_test"):
            value = record.get(side)
            if isinstance(value, dict):
                row.update({f"{side}.{key}": item for key, item in value.items()})
            elif value is not None:
                row[side] = value
        last = _mapping(record.get("metrics"))  # a row edited by hand may hold anything
        # The daemon keeps each run's best values in its row (records since 2026-12): read
        # from there, --best costs no history; older rows have their history read.
        stored = record.get("best") if isinstance(record.get("best"), dict) else None
        history = run.history() if (best and stored is None) or not last else []
        for report in history:
            last.update(report["metrics"])
        row.update({f"last.{name}": value for name, value in last.items()})
        if best:
            row.update(_best_columns(stored) if stored is not None else _best(history))
        row["steps"] = _steps_reached(record)
        early = record.get("early_stopping")
        if record.get("status") == "stopped" and isinstance(early, dict) and early.get("step") is not None:
            row["steps"] = early["step"]  # where early stopping stopped it
        for key in ("gpu_peak_memory_mb", "gpu_utilization"):
            if record.get(key) is not None:
                row[key] = record[key]
        row["duration_s"] = record.get("duration_s")
        rows.append(row)
        values = _mapping(record.get("parameters"))
        parameters.append({key: value for key, value in values.items() if key not in _NOT_HYPERPARAMETERS})
    # A parameter keeps its bare name unless a column of the comparison has it already.
    differing = [(name, f"param.{name}" if name in _TAKEN or name.startswith(_PREFIXES) else name) for name in _differing(parameters)]
    for row, values in zip(rows, parameters):
        row.update({column: values.get(name) for name, column in differing})
    differing_columns = [column for _, column in differing]
    seen = set(_FIXED_FIRST) | set(differing_columns) | set(_FIXED_LAST)
    rest: List[str] = []
    for row in rows:
        for key in row:
            if key not in seen:  # a set: an evaluation of 100,000 keys was quadratic in a list
                seen.add(key)
                rest.append(key)
    # Evaluations on train, then on test, then the reported metrics, then their best values.
    rest.sort(key=lambda key: 0 if key.startswith("eval_train") else 1 if key.startswith("eval_test") else 3 if key.startswith("best.") else 2)
    return list(_FIXED_FIRST) + differing_columns + rest + list(_FIXED_LAST), rows


def _mapping(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def keep_best(best: Dict[str, Any], metrics: Dict[str, Any]) -> None:
    """Fold one report's ``metrics`` into ``best`` (name -> the best value as reported)."""
    for name, reported in metrics.items():
        value = number(reported)
        if value is None or value != value:  # NaN is never the best
            continue
        held = number(best[name]) if name in best else None
        if held is None or (value < held if lower_is_better(name) else value > held):
            best[name] = reported


def _best(history: List[Dict[str, Any]]) -> Dict[str, Any]:
    best: Dict[str, Any] = {}
    for report in history:
        keep_best(best, report["metrics"])
    return _best_columns(best)


def _best_columns(best: Dict[str, Any]) -> Dict[str, Any]:
    return {f"best.{name}": number(value) for name, value in best.items() if number(value) is not None}


def _steps_reached(record: Dict[str, Any]) -> Any:
    """How far the run's model got: its total steps when it finished, else the steps it had
    before this run and those this run trained (a run cut off at step 37 of 50 is not 50)."""
    steps = record.get("steps")
    if not isinstance(steps, dict):
        return steps
    total, trained, already = steps.get("total"), steps.get("trained"), steps.get("already_trained")
    if record.get("status") == "finished" or not _whole(trained):
        return total if record.get("status") == "finished" else None
    reached = trained + (already if _whole(already) else 0)
    return min(reached, total) if _whole(total) else reached


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _differing(parameters: List[Dict[str, Any]]) -> List[str]:
    """The parameter names whose values are not the same in every row, in first-seen order."""
    names: Dict[str, None] = {}  # ordered and a set
    for values in parameters:
        names.update(dict.fromkeys(values))
    differing = []
    for name in names:
        seen = set()
        for values in parameters:
            seen.add(_comparable(values.get(name)))
            if len(seen) > 1:
                differing.append(name)
                break
    return differing


def _comparable(value: Any) -> Any:
    """``value`` as something that is equal for equal values and hashable: a plain value as
    itself with its type (1 and 1.0 and True differ, as in JSON), anything else as its JSON."""
    if isinstance(value, float) and value != value:
        return ("float", "NaN")  # never equal to itself, yet one value
    if value is None or isinstance(value, (str, int, float, bool)):
        return (type(value).__name__, value)
    return ("json", json_text(value, sort_keys=True))


def sort_rows(columns: List[str], rows: List[Dict[str, Any]], sort: str) -> List[Dict[str, Any]]:
    """``rows`` by the column ``sort`` names (``-name``: descending): numbers, then other
    values as text, then the rows without one (NaN counts as without)."""
    descending = sort.startswith("-")
    column = resolve_column(columns, sort[1:] if descending else sort)
    numbers, texts, absent = [], [], []
    for row in rows:
        value = row.get(column)
        as_number = number(value)
        if as_number is not None and as_number == as_number:
            numbers.append((as_number, row))
        elif value is None or as_number is not None:
            absent.append(row)
        else:
            texts.append((str(value), row))
    numbers.sort(key=lambda item: item[0], reverse=descending)
    texts.sort(key=lambda item: item[0], reverse=descending)
    return [row for _, row in numbers] + [row for _, row in texts] + absent


def resolve_column(columns: List[str], name: str) -> str:
    """The column ``name`` means: itself, or eval_test.NAME, last.NAME, eval_train.NAME."""
    for candidate in (name, f"eval_test.{name}", f"last.{name}", f"eval_train.{name}"):
        if candidate in columns:
            return candidate
    shown = name if name.strip() else repr(name)  # an empty name is seen quoted
    raise ValueError(f"--sort {shown}: no such column; the columns are: {', '.join(columns)}")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return one_line(json_text(value, ensure_ascii=False))
    return one_line(str(value))


def show_comparison(
    runs: Sequence[RecordedRun], view: ConsoleView, best: bool = False, sort: Optional[str] = None, form: Optional[str] = None
) -> int:
    """Print the comparison in ``form`` (a table, "json", "csv" or "markdown"); the exit code."""
    if not runs:
        view.error("no run to compare: results.jsonl has no finished run of what was asked (mlpipeline -r runs the queue; --any-state takes unfinished runs too)")
        return 1
    columns, rows = comparison(runs, best)
    if sort is not None:  # --sort "" names no column, and says so
        try:
            rows = sort_rows(columns, rows, sort)
        except ValueError as exc:
            view.error(str(exc))
            return 2
    if form == "json":
        view.write_raw(json_text([{key: row.get(key) for key in columns} for row in rows], indent=1) + "\n")
    elif form == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([one_line(column) for column in columns])
        writer.writerows([[cell(row.get(key)) for key in columns] for row in rows])
        view.write_raw(text.getvalue())
    elif form == "markdown":
        view.write_raw(markdown_table(columns, rows))
    else:
        view.table(columns, [[cell(row.get(key)) for key in columns] for row in rows])
    return 1 if view.output_lost else 0  # a program reading it must not take nothing for the answer


def markdown_table(columns: List[str], rows: List[Dict[str, Any]]) -> str:
    def escaped(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    numeric = {key for key in columns if rows and all(number(row.get(key)) is not None or row.get(key) is None for row in rows)}
    lines = ["| " + " | ".join(escaped(one_line(key)) for key in columns) + " |"]
    lines.append("|" + "|".join("---:" if key in numeric else "---" for key in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(escaped(cell(row.get(key))) for key in columns) + " |")
    return "\n".join(lines) + "\n"
