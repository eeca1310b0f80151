"""``python -m mlpipeline``: the same command as ``mlpipeline``."""
import sys

try:
    from mlpipeline.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still loading the command
    sys.exit(130)

sys.exit(main())
