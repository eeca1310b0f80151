"""``python -m mlpipeline``: the same command as ``mlpipeline``."""
import sys

try:
    # First of all, before cli.py is even compiled: until a handler of ours is in place, a
    # SIGTERM kills outright and a Ctrl-C is Python's (execution/signals.py).
    from mlpipeline.execution.signals import raise_on_stop_signals

    raise_on_stop_signals()
    from mlpipeline.cli import main
except KeyboardInterrupt as exc:
    # Ctrl-C before that; or SIGTERM or Ctrl-C after it, an Interrupted, which knows its exit code.
    sys.exit(getattr(exc, "exit_code", 130))
except BaseException:
    # Whatever a signal broke in these imports (Python 3.11 wraps a KeyboardInterrupt that
    # lands in a class's __set_name__ in a RuntimeError) is that signal's doing.
    from mlpipeline.execution.signals import EXIT_CODES, first_stop_signal

    if first_stop_signal() is None:
        raise
    sys.exit(EXIT_CODES.get(first_stop_signal(), 130))

sys.exit(main())
