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

from mlpipeline.commands import (  # noqa: E402
    COMMANDS,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    OutputLost,
    build_command_parser,
    build_parser,
    split_command,
)


def _descending_sort(arguments: List[str]) -> List[str]:
    """``--sort -loss`` as ``--sort=-loss``: argparse takes a value starting with - for an option."""
    out = list(arguments)
    for index, word in enumerate(out[:-1]):
        following = out[index + 1]
        if word == "--sort" and following.startswith("-") and not following.startswith("--") and len(following) > 1:
            out[index : index + 2] = [f"--sort={out[index + 1]}"]
            break
    return out


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
    closed = _usable_standard_streams()
    try:
        try:
            code = _main(argv, closed)
        finally:
            settle()
    except SystemExit as exc:  # argparse's, after --help, --version or a usage error it printed
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except OutputLost as exc:
        code = exc.code
        _say_lost(exc.stream, exc.strerror or str(exc))
    except BaseException as exc:  # noqa: BLE001 - judged below: a signal's doing, or re-raised
        settle()  # again: a signal may have come in the finally above, before settle() had run
        if first_stop_signal() is None and not _from_ctrl_c(exc):
            raise  # not a signal's doing: a bug, whose traceback is wanted
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED and first_stop_signal() is not None:
        code = EXIT_CODES.get(first_stop_signal(), EXIT_INTERRUPTED)  # 143 for a SIGTERM, 129 for a SIGHUP
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        # stdout is a full disk or a closed pipe: what could not be flushed is lost, and a
        # command that had nothing else to do did not do it.
        from mlpipeline.watch.console import silence_stdout

        silence_stdout()
        if code == 0:
            code = 1
            _say_lost("standard output", getattr(exc, "strerror", None) or str(exc))
    return code


def _say_lost(stream: str, reason: str) -> None:
    try:
        sys.stderr.write(f"mlpipeline: {stream} cannot be written ({reason})\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _usable_standard_streams() -> Optional[str]:
    """Make standard output and error writable whatever they are: a closed one (``>&-``, which
    Python gives as None) is /dev/null, and a character its encoding lacks (``LANG=C``,
    ``PYTHONIOENCODING=ascii``, a name with a lone surrogate) is written escaped instead of
    raising in the middle of a daemon's loop. Returns why standard output is lost, if it is."""
    import os

    # A closed descriptor 0, 1 or 2 would be the number the next pipe gets (a version's
    # lifeline on 0, read as its daemon's end by the child that gets /dev/null there): each
    # closed one is /dev/null from here on, in order, so each takes its own number.
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
    closed = None
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - the process's own
            closed = closed or ("standard output is closed" if name == "stdout" else None)
            continue
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass  # not a text stream of io's (a test's capture): what it takes is its business
    return closed


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


def _main(argv: Optional[List[str]], stdout_closed: Optional[str] = None) -> int:
    from pathlib import Path

    from mlpipeline.queue.config import ConfigError, load_project_config, parse_entry
    from mlpipeline.records.files import NotRegularFile
    from mlpipeline.records.heartbeat import heartbeat_problem
    from mlpipeline.records.identity import HostnameError, hostname
    from mlpipeline.watch.console import ConsoleView, make_console

    name, arguments = split_command(list(sys.argv[1:] if argv is None else argv))
    command = COMMANDS.get(name) if name is not None else None
    if command is not None and not command.needs_project:
        # -C names a project, which this command has no use for.
        arguments = [word for index, word in enumerate(arguments) if word != "-C" and (index == 0 or arguments[index - 1] != "-C")]
    arguments = _descending_sort(arguments)
    parser = build_parser() if name is None else build_command_parser(name)
    # Intermixed: `plot loss -o loss.png a.py` names a.py after an option, as people write it.
    args = parser.parse_args(arguments) if name is None else parser.parse_intermixed_args(arguments)
    if name is None:
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
    if stdout_closed:
        view.lose_output(stdout_closed)
    if command is not None and not command.needs_project:
        return command.run(None, args, view)
    if args.directory is not None and not args.directory.strip():
        view.error("-C names no folder; give the project's folder, or leave -C out for this one")
        return EXIT_USAGE
    try:
        project_dir = Path(args.directory or ".").resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python 3.11's word for a link that loops
        view.error(f"{args.directory}: a symbolic link that loops, not a folder")
        return EXIT_USAGE
    if not project_dir.is_dir():
        view.error(f"{args.directory}: " + ("a file, not a folder" if project_dir.exists() else "no such folder"))
        return EXIT_USAGE
    try:
        hostname()
    except HostnameError as exc:
        view.error(str(exc))
        return EXIT_USAGE
    if heartbeat_problem():
        view.error(str(heartbeat_problem()))
        return EXIT_USAGE
    try:
        if command is not None and not command.needs_config:
            return command.run(project_dir, args, view)
        project = load_project_config(project_dir)
        if command is not None:
            return command.run(project, args, view)
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
    except NotRegularFile as exc:
        # A FIFO or device where a record or config file belongs, met by a command reading it
        # (the daemon's own reads and writes are judged in its loop).
        view.error(f"{exc.filename}: cannot be used (not a regular file)")
        return EXIT_USAGE
    except OSError as exc:
        # A record file a command (status, compare, ...) cannot open: no permission, a link
        # that loops. The daemon's own reads and writes are judged in its loop.
        if command is None or exc.filename is None:
            raise
        view.error(f"{exc.filename}: cannot be used ({exc.strerror or exc})")
        return EXIT_USAGE
