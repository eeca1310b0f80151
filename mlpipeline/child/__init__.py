"""What runs in a version's own processes, below the daemon: the keeper, the worker that
imports the script and runs one version, and the preload and script servers they are forked
from. Nothing here runs in the daemon, which starts these by module name
(``python -m mlpipeline.child.keeper``, ``...child.preload_server``) and speaks to them only
through executors/protocol.py."""
