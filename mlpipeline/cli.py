"""The ``mlpipeline`` command: parse, build the config, call the library, map errors to exit codes.

The stop signals' handlers are the first thing this module installs, and nothing heavy is
imported before :func:`main` is running: a Ctrl-C or SIGTERM at any moment of a command ends it
with exit code 130 or 143, never a traceback from the middle of an import
(execution/signals.py says how).
"""
from __future__ import annotations

import sys

from mlpipeline.execution.signals import EXIT_CODES, first_stop_signal, raise_on_stop_signals, settle

# Before typing and the rest: until a handler of ours is in place, SIGTERM kills outright.
raise_on_stop_signals()

from typing import TYPE_CHECKING, Any, Dict, List, Optional  # noqa: E402

if TYPE_CHECKING:
    import argparse

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

COMMANDS = {
    "status": "where every queued version stands",
    "compare": "the versions' parameters, evaluations and metrics side by side",
    "plot": "a metric's curve over steps, one per version, as a PNG or SVG file",
    "cancel": "stop the running versions named, record them cancelled, start none of them again",
    "pause": "let running versions finish and start no new one, on every daemon of the folder",
    "resume": "let the daemons start versions again after a pause",
    "migrate-config": "rewrite the original package's INI config files as TOML",
}
# Not a command on a project: `mlpipeline completion bash|zsh` prints a shell completion script.
COMPLETION = "completion"


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def build_parser() -> "argparse.ArgumentParser":
    """The parser of ``mlpipeline [options]``: test mode, or with -r execution mode."""
    import argparse

    _VersionAction = _version_action()

    described = {**COMMANDS, COMPLETION: "print a bash or zsh completion script: eval \"$(mlpipeline completion bash)\""}
    commands = "\n".join(f"  mlpipeline {name:<15} {what}" for name, what in described.items())
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the installed version and exit")
    return parser


def _version_action() -> type:
    import argparse

    class VersionAction(argparse.Action):
        """--version, read from the metadata only when asked (the lookup costs tens of ms)."""

        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            sys.stdout.write(f"mlpipeline {installed_version()}\n")
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


def _add_directory(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("-C", dest="directory", metavar="DIR", help="the project folder (default: the current one)")


def build_command_parser(command: str) -> "argparse.ArgumentParser":
    """The parser of ``mlpipeline COMMAND``, with that command's options only."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"mlpipeline {command}", description=COMMANDS[command].capitalize() + ".")
    _add_directory(parser)
    if command == "status":
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if command == "cancel":
        parser.add_argument("select", nargs="+", metavar="SCRIPT[:VERSION]", help="the scripts or versions to cancel")
    if command in ("compare", "plot"):
        if command == "plot":
            parser.add_argument("metric", metavar="METRIC", help="a metric the versions report()")
        parser.add_argument(
            "select", nargs="*", metavar="SCRIPT[:VERSION]", help="these scripts or versions (default: every version with a run)"
        )
        parser.add_argument(
            "--any-state", action="store_true", help="the latest run of each version whatever its state (default: the latest finished)"
        )
    if command == "compare":
        parser.add_argument("--best", action="store_true", help="add the best value of each reported metric")
        parser.add_argument("--sort", metavar="COLUMN", help="sort by this column or metric; -COLUMN sorts descending")
        form = parser.add_mutually_exclusive_group()
        form.add_argument("--json", dest="form", action="store_const", const="json", help="print JSON")
        form.add_argument("--csv", dest="form", action="store_const", const="csv", help="print CSV")
        form.add_argument("--markdown", dest="form", action="store_const", const="markdown", help="print a Markdown table")
    if command == "plot":
        parser.add_argument("-o", dest="output", metavar="FILE", help="the figure to write, .png or .svg (default: METRIC.png)")
        parser.add_argument("--log", action="store_true", help="a logarithmic scale for the metric")
    return parser


def _descending_sort(arguments: List[str]) -> List[str]:
    """``--sort -loss`` as ``--sort=-loss``: argparse takes a value starting with - for an option."""
    out = list(arguments)
    for index, word in enumerate(out[:-1]):
        following = out[index + 1]
        if word == "--sort" and following.startswith("-") and not following.startswith("--") and len(following) > 1:
            out[index : index + 2] = [f"--sort={out[index + 1]}"]
            break
    return out


def split_command(argv: List[str]) -> "tuple[Optional[str], List[str]]":
    """The command named in ``argv`` (its first word that is not an option or -C's folder),
    and the arguments without it."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "-C":
            index += 2
            continue
        if not word.startswith("-"):
            return (word, argv[:index] + argv[index + 1:]) if word in COMMANDS or word == COMPLETION else (None, argv)
        index += 1
    return None, argv


def _run_flags(args: "argparse.Namespace") -> Dict[str, Any]:
    return {
        "-u": args.use_history,
        "-n": args.no_log,
        "--fail-fast": args.fail_fast,
        "--retry-failed": args.retry_failed,
        "--workers": args.workers,
        "--wait": args.wait,
        "--only": args.only,
    }


def main(argv: Optional[List[str]] = None) -> int:
    try:
        try:
            code = _main(argv)
        finally:
            settle()
    except BaseException as exc:  # noqa: BLE001 - judged below: a signal's doing, or re-raised
        settle()  # again: a signal may have come in the finally above, before settle() had run
        if first_stop_signal() is None and not _from_ctrl_c(exc):
            raise  # not a signal's doing: a bug, whose traceback is wanted (or argparse's SystemExit)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED and first_stop_signal() is not None:
        code = EXIT_CODES.get(first_stop_signal(), EXIT_INTERRUPTED)  # 143 for a SIGTERM, 129 for a SIGHUP
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        # stdout is a full disk or a closed pipe: what could not be flushed is lost, quietly.
        from mlpipeline.watch.console import silence_stdout

        silence_stdout()
    return code


def _from_ctrl_c(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a KeyboardInterrupt: a Ctrl-C under Python's own
    handler (the debugger's, with --pdb), perhaps wrapped (Python 3.11's ``__set_name__`` wraps
    one in a RuntimeError)."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 100:
        if isinstance(current, KeyboardInterrupt):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _completion(arguments: List[str]) -> int:
    import argparse

    from mlpipeline.completion import SHELLS, completion_script

    parser = argparse.ArgumentParser(prog="mlpipeline completion", description="Print a shell completion script: eval \"$(mlpipeline completion bash)\"")
    parser.add_argument("shell", choices=SHELLS)
    sys.stdout.write(completion_script(parser.parse_args(arguments).shell))
    return EXIT_OK


def _main(argv: Optional[List[str]]) -> int:
    from pathlib import Path

    from mlpipeline.queue.config import ConfigError, load_project_config, parse_entry
    from mlpipeline.records.identity import HostnameError, hostname
    from mlpipeline.watch.console import ConsoleView, make_console

    command, arguments = split_command(list(sys.argv[1:] if argv is None else argv))
    if command == COMPLETION:
        # -C names a project, which completion has no use for.
        kept = [word for index, word in enumerate(arguments) if word != "-C" and (index == 0 or arguments[index - 1] != "-C")]
        return _completion(kept)
    arguments = _descending_sort(arguments)
    parser = build_parser() if command is None else build_command_parser(command)
    # Intermixed: `plot loss -o loss.png a.py` names a.py after an option, as people write it.
    args = parser.parse_args(arguments) if command is None else parser.parse_intermixed_args(arguments)
    if command is None:
        if args.json:
            parser.error("--json: for 'mlpipeline status' and 'mlpipeline compare' only")
        if not args.run:
            given = [flag for flag, value in _run_flags(args).items() if value and flag != "--only"]
            if given:
                parser.error(f"{', '.join(given)}: for execution mode only; add -r")
        if args.pdb and args.run:
            parser.error("--pdb: for test mode (without -r); execution mode records failures and goes on")
        if args.retry_failed and not args.use_history:
            parser.error("--retry-failed works with -u, which is what skips failed versions")
    view = ConsoleView(make_console())
    project_dir = Path(args.directory or ".").resolve()
    if not project_dir.is_dir():
        view.error(f"{args.directory}: " + ("a file, not a folder" if project_dir.exists() else "no such folder"))
        return EXIT_USAGE
    try:
        hostname()
    except HostnameError as exc:
        view.error(str(exc))
        return EXIT_USAGE
    try:
        if command == "migrate-config":
            from mlpipeline.queue.ini import migrate_project

            migrate_project(project_dir, view.info)
            return EXIT_OK
        project = load_project_config(project_dir)
        if command == "status":
            from mlpipeline.watch.status import show_status

            try:
                return show_status(project, view, as_json=args.json)
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
        if command in ("cancel", "pause", "resume"):
            from mlpipeline.execution.control import cancel_command, pause_command

            try:
                if command == "cancel":
                    return cancel_command(project, args.select, view)
                return pause_command(project, view, pause=command == "pause")
            except OSError as exc:
                view.error(f"{exc.filename or project.outputs_dir}: cannot be written ({exc.strerror or exc}); nothing was asked")
                return EXIT_USAGE
        if command in ("compare", "plot"):
            from mlpipeline.watch.runs import missing_selections, select_runs, warn_on_stderr

            runs = select_runs(project, args.select, any_state=args.any_state)
            if runs:
                kind = "run" if args.any_state else "finished run"
                for item in missing_selections(args.select, runs, project):
                    warn_on_stderr(f"{item}: results.jsonl has no {kind} of it; left out")
            if command == "compare":
                from mlpipeline.watch.compare import show_comparison

                return show_comparison(runs, view, best=args.best, sort=args.sort, form=args.form)
            from mlpipeline.watch.plot import plot_metric

            return plot_metric(runs, view, args.metric, output=args.output, log_scale=args.log)
        only = tuple(parse_entry(item, project.models_dir, "--only") for item in args.only)
        from mlpipeline.execution.framework_noise import quiet_frameworks

        quiet_frameworks()
        if args.run:
            from mlpipeline.execution.loop import ExecutionLoop, ExecutionOptions

            options = ExecutionOptions(
                use_history=args.use_history,
                retry_failed=args.retry_failed,
                fail_fast=args.fail_fast,
                no_log=args.no_log,
                only=only,
                workers=args.workers,
                wait=args.wait,
            )
            return ExecutionLoop(project, options, view).run()
        from mlpipeline.execution.test_mode import DryRun

        return DryRun(project, only, view, debug=args.pdb).run()
    except ConfigError as exc:
        view.error(str(exc))
        return EXIT_USAGE
