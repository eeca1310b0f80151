"""The commands of ``mlpipeline``: one table, from which the parsers, the dispatch in cli.py
and the shell completion (completion.py) are all made, so that a command is spelled once.

``mlpipeline [options]`` (test mode, or execution mode with -r) is not in the table: it is
what runs when no command is named, and its parser is :func:`build_parser`. Nothing heavy is
imported here: each command imports what it runs when it runs.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from mlpipeline.queue.config import ProjectConfig
    from mlpipeline.watch.console import ConsoleView

SHELLS = ("bash", "zsh")
"""What ``mlpipeline completion`` writes a script for."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Command(NamedTuple):
    """A command: what ``--help`` says of it, its arguments, and what it runs.

    ``run(project, args, view)`` returns the exit code; ``project`` is the loaded project
    config, or the project folder for a command that reads no config (``needs_config``
    False), or None for one that needs no project at all (``needs_project`` False).
    """

    summary: str
    arguments: Callable[["argparse.ArgumentParser"], None]
    run: Callable[[Any, "argparse.Namespace", "ConsoleView"], int]
    needs_config: bool = True
    needs_project: bool = True


# -- each command's arguments ------------------------------------------------------------


def _no_arguments(parser: "argparse.ArgumentParser") -> None:
    pass


def _status_arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _cancel_arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("select", nargs="+", metavar="SCRIPT[:VERSION]", help="the scripts or versions to cancel")


def _selection_arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("select", nargs="*", metavar="SCRIPT[:VERSION]", help="these scripts or versions (default: every version with a run)")
    parser.add_argument(
        "--any-state", action="store_true", help="the latest run of each version whatever its state (default: the latest finished)"
    )


def _compare_arguments(parser: "argparse.ArgumentParser") -> None:
    _selection_arguments(parser)
    parser.add_argument("--best", action="store_true", help="add the best value of each reported metric")
    parser.add_argument("--sort", metavar="COLUMN", help="sort by this column or metric; -COLUMN sorts descending")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", dest="form", action="store_const", const="json", help="print JSON")
    form.add_argument("--csv", dest="form", action="store_const", const="csv", help="print CSV")
    form.add_argument("--markdown", dest="form", action="store_const", const="markdown", help="print a Markdown table")


def _plot_arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("metric", metavar="METRIC", help="a metric the versions report()")
    _selection_arguments(parser)
    parser.add_argument("-o", dest="output", metavar="FILE", help="the figure to write, .png or .svg (default: METRIC.png)")
    parser.add_argument("--log", action="store_true", help="a logarithmic scale for the metric")


def _completion_arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("shell", choices=SHELLS)


# -- what each command runs --------------------------------------------------------------


def _status(project: "ProjectConfig", args: "argparse.Namespace", view: "ConsoleView") -> int:
    from mlpipeline.watch.status import show_status

    try:
        return show_status(project, view, as_json=args.json)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _control(name: str) -> Callable[["ProjectConfig", "argparse.Namespace", "ConsoleView"], int]:
    def run(project: "ProjectConfig", args: "argparse.Namespace", view: "ConsoleView") -> int:
        from mlpipeline.execution.control import cancel_command, pause_command

        try:
            if name == "cancel":
                return cancel_command(project, args.select, view)
            return pause_command(project, view, pause=name == "pause")
        except OSError as exc:
            view.error(f"{exc.filename or project.outputs_dir}: cannot be written ({exc.strerror or exc}); nothing was asked")
            return EXIT_USAGE

    return run


def _selected_runs(project: "ProjectConfig", args: "argparse.Namespace") -> Any:
    from mlpipeline.watch.runs import missing_selections, select_runs, warn_on_stderr

    runs = select_runs(project, args.select, any_state=args.any_state)
    missing = missing_selections(args.select, runs, project)
    if missing:
        import difflib

        kind = "run" if args.any_state else "finished run"
        # A slip of a name (crsh.py) is told from a version that has not finished yet.
        every = select_runs(project, [], any_state=True, warn=lambda _: None)
        recorded = list({name: None for run in every for name in (str(run.row.get("script")), run.label)})
        for item in missing:
            if item in recorded:
                hint = "; it has runs, none finished (--any-state shows them)"
            else:
                close = difflib.get_close_matches(item, recorded, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
            warn_on_stderr(f"{item}: results.jsonl has no {kind} of it; left out{hint}")
    return runs


def _compare(project: "ProjectConfig", args: "argparse.Namespace", view: "ConsoleView") -> int:
    from mlpipeline.watch.compare import show_comparison

    return show_comparison(_selected_runs(project, args), view, best=args.best, sort=args.sort, form=args.form)


def _plot(project: "ProjectConfig", args: "argparse.Namespace", view: "ConsoleView") -> int:
    from mlpipeline.watch.plot import plot_metric

    return plot_metric(_selected_runs(project, args), view, args.metric, output=args.output, log_scale=args.log)


def _migrate_config(project_dir: "Path", args: "argparse.Namespace", view: "ConsoleView") -> int:
    from mlpipeline.queue.ini import migrate_project

    done = migrate_project(project_dir, view.info)
    if all(migration.action == "absent" for migration in done):
        view.error(f"{project_dir}: no config file to migrate here; run it in the project's folder or give it with -C")
        return EXIT_USAGE
    return EXIT_OK


def _completion(project: None, args: "argparse.Namespace", view: "ConsoleView") -> int:
    from mlpipeline.completion import completion_script, options_of

    per_command = {name: options_of(build_command_parser(name)) for name in COMMANDS}
    per_command["completion"] = list(SHELLS)  # its one argument is a shell, not an option
    view.write_raw(completion_script(args.shell, options_of(build_parser()), per_command))
    return 1 if view.output_lost else EXIT_OK


COMMANDS: Dict[str, Command] = {
    "status": Command("where every queued version stands", _status_arguments, _status),
    "compare": Command("the versions' parameters, evaluations and metrics side by side", _compare_arguments, _compare),
    "plot": Command("a metric's curve over steps, one per version, as a PNG or SVG file", _plot_arguments, _plot),
    "cancel": Command(
        "stop the running versions named, record them cancelled, start none of them again", _cancel_arguments, _control("cancel")
    ),
    "pause": Command("let running versions finish and start no new one, on every daemon of the folder", _no_arguments, _control("pause")),
    "resume": Command("let the daemons start versions again after a pause", _no_arguments, _control("resume")),
    "migrate-config": Command("rewrite the original package's INI config files as TOML", _no_arguments, _migrate_config, needs_config=False),
    "completion": Command(
        'print a bash or zsh completion script: eval "$(mlpipeline completion bash)"',
        _completion_arguments,
        _completion,
        needs_config=False,
        needs_project=False,
    ),
}


# -- the parsers -------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _add_directory(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("-C", dest="directory", metavar="DIR", help="the project folder (default: the current one)")


def build_parser() -> "argparse.ArgumentParser":
    """The parser of ``mlpipeline [options]``: test mode, or with -r execution mode."""
    import argparse

    commands = "\n".join(f"  mlpipeline {name:<15} {command.summary}" for name, command in COMMANDS.items())
    parser = _parser_class()(
        prog="mlpipeline",
        usage="%(prog)s [-r] [-u] [-n] [-C DIR] [options]\n       %(prog)s COMMAND [-C DIR] [options]",
        description="Run every version of every queued model script, each in its own process. "
        "Without -r: test mode (models_test.config, 1 step, temporary dirs, stop at the first error). "
        "With -r: execution mode (models.config, full runs, records under outputs/).",
        epilog=f"commands (each has --help):\n{commands}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-r", "--run", action="store_true", help="execution mode: run models.config for real")
    parser.add_argument(
        "-u",
        "--use-history",
        action="store_true",
        help="skip versions finished before; resume versions that were cut off, first",
    )
    parser.add_argument("-n", "--no-log", action="store_true", help="write no log-<host> or output-<host> lines")
    _add_directory(parser)
    parser.add_argument("--retry-failed", action="store_true", help="with -u: run failed versions again")
    parser.add_argument("--fail-fast", action="store_true", help="stop the queue at the first failed version")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCRIPT[:VERSION]",
        help="run only this script or version of the queue (may be repeated)",
    )
    parser.add_argument(
        "--workers", type=_positive_int, metavar="N", help="execution mode: N versions at once (default: mlp.config's workers)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="execution mode: when the queue is empty, wait for models.config or a script to change"
    )
    parser.add_argument(
        "--pdb", action="store_true", help="test mode: run a failing version again in this process, in the debugger at its exception"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # to say it is status's
    parser.add_argument("--version", action=_version_action(), nargs=0, help="show the installed version and exit")
    return parser


def build_command_parser(name: str) -> "argparse.ArgumentParser":
    """The parser of ``mlpipeline NAME``, with that command's options only."""
    import argparse

    command = COMMANDS[name]
    parser = _parser_class()(prog=f"mlpipeline {name}", description=command.summary[0].upper() + command.summary[1:] + ".")
    if command.needs_project:
        _add_directory(parser)
    command.arguments(parser)
    return parser


class OutputLost(OSError):
    """What --help, --version or a usage error had to say could not be written: standard
    output (or error) is a full disk, a closed pipe, a terminal gone."""

    def __init__(self, stream: str, code: int, errno_: Optional[int], reason: str) -> None:
        super().__init__(errno_, reason)
        self.stream = stream  # "standard output" or "standard error"
        self.code = code  # what the command exits with: 1, or a usage error's 2


def _parser_class() -> type:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse's parser, except that a message it cannot write is not dropped in silence
        (argparse's own exits 0 after a --help that reached nobody)."""

        def _print_message(self, message: str, file: Any = None) -> None:
            if not message:
                return
            file = file or sys.stderr
            try:
                file.write(message)
                file.flush()
            except (OSError, ValueError) as exc:
                to_stderr = file is sys.stderr  # a usage error's, which exits 2 all the same
                stream, code = ("standard error", 2) if to_stderr else ("standard output", 1)
                raise OutputLost(stream, code, getattr(exc, "errno", None), getattr(exc, "strerror", None) or str(exc)) from exc

    return Parser


def _version_action() -> type:
    import argparse

    class VersionAction(argparse.Action):
        """--version, read from the metadata only when asked (the lookup costs tens of ms)."""

        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            parser._print_message(f"mlpipeline {installed_version()}\n", sys.stdout)
            parser.exit()

    return VersionAction


def installed_version() -> str:
    """The version in the installed package's metadata; the source's own when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlpipeline")
    except PackageNotFoundError:
        from mlpipeline import __version__

        return __version__


def split_command(argv: "list[str]") -> "tuple[Optional[str], list[str]]":
    """The command named in ``argv`` (its first word that is not an option or -C's folder),
    and the arguments without it."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "-C":
            index += 2
            continue
        if not word.startswith("-"):
            return (word, argv[:index] + argv[index + 1 :]) if word in COMMANDS else (None, argv)
        index += 1
    return None, argv
