"""The ``mlpipeline`` command: parse, build the config, call the library, map errors to exit codes.

Nothing heavy is imported before :func:`main` is running, so that a Ctrl-C in the first moments
of start-up ends with exit code 130, not a traceback from the middle of an import.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:
    import argparse

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

COMMANDS = ("status", "migrate-config")


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
    import argparse

    from mlpipeline import __version__

    parser = argparse.ArgumentParser(
        prog="mlpipeline",
        usage="%(prog)s [-r] [-u] [-n] [-C DIR] [options]\n"
        "       %(prog)s status [--json] [-C DIR]\n"
        "       %(prog)s migrate-config [-C DIR]",
        description="Run every version of every queued model script, each in its own process. "
        "Without -r: test mode (models_test.config, 1 step, temporary dirs, stop at the first error). "
        "With -r: execution mode (models.config, full runs, records under outputs/). "
        "'status' shows where every queued version stands; 'migrate-config' rewrites the original "
        "package's INI config files as TOML.",
    )
    parser.add_argument("command", nargs="?", choices=COMMANDS, help=argparse.SUPPRESS)
    parser.add_argument("-r", "--run", action="store_true", help="execution mode: run models.config for real")
    parser.add_argument(
        "-u",
        "--use-history",
        action="store_true",
        help="skip versions finished before; resume versions that were cut off, first",
    )
    parser.add_argument("-n", "--no-log", action="store_true", help="write no log-<host> or output-<host> lines")
    parser.add_argument("-C", dest="directory", metavar="DIR", help="the project folder (default: the current one)")
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
    parser.add_argument("--json", action="store_true", help="with status: print JSON instead of a table")
    parser.add_argument("--version", action="version", version=f"mlpipeline {__version__}")
    return parser


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
        code = _main(argv)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED  # before the command's own signal handling was in place
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        # stdout is a full disk or a closed pipe: what could not be flushed is lost, quietly.
        from mlpipeline.watch.console import silence_stdout

        silence_stdout()
    return code


def _main(argv: Optional[List[str]]) -> int:
    from pathlib import Path

    from mlpipeline.queue.config import ConfigError, load_project_config, parse_entry
    from mlpipeline.records.identity import HostnameError, hostname
    from mlpipeline.watch.console import ConsoleView, make_console

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and args.command != "status":
        parser.error("--json: for 'mlpipeline status' only")
    if args.command is not None:
        given = [flag for flag, value in _run_flags(args).items() if value] + (["-r"] if args.run else [])
        if given:
            parser.error(f"{', '.join(given)}: not for 'mlpipeline {args.command}'")
    elif not args.run:
        given = [flag for flag, value in _run_flags(args).items() if value and flag != "--only"]
        if given:
            parser.error(f"{', '.join(given)}: for execution mode only; add -r")
    if args.retry_failed and not args.use_history:
        parser.error("--retry-failed works with -u, which is what skips failed versions")
    view = ConsoleView(make_console())
    project_dir = Path(args.directory or ".").resolve()
    if not project_dir.is_dir():
        view.error(f"{args.directory}: no such folder")
        return EXIT_USAGE
    try:
        hostname()
    except HostnameError as exc:
        view.error(str(exc))
        return EXIT_USAGE
    try:
        if args.command == "migrate-config":
            from mlpipeline.queue.ini import migrate_project

            migrate_project(project_dir, view.info)
            return EXIT_OK
        project = load_project_config(project_dir)
        if args.command == "status":
            from mlpipeline.watch.status import show_status

            try:
                return show_status(project, view, as_json=args.json)
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
        only = tuple(parse_entry(item, project.models_dir, "--only") for item in args.only)
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

        return DryRun(project, only, view).run()
    except ConfigError as exc:
        view.error(str(exc))
        return EXIT_USAGE
