"""The in-process executor: one version run in this very process, for ``mlpipeline --pdb``.

Every other executor keeps user code out of the daemon; a debugger needs it in: the version
runs here, through the worker's own code (so the same hooks in the same order), with the
folder, ``sys.path``, ``sys.argv`` and environment its child would have had, and at its
exception the post-mortem debugger opens on the user's frame. Only test mode uses it, after
the version already failed in its own process.
"""
from __future__ import annotations

import os
import pdb
import sys
from typing import Any, Callable, Dict, Optional

from mlpipeline.executors.protocol import ChildRequest


def debug_version(
    request: ChildRequest,
    project_dir: str,
    env: Dict[str, str],
    post_mortem: Callable[[Any], None] = pdb.post_mortem,
) -> Optional[str]:
    """Run ``request`` here; at its exception, ``post_mortem`` on the exception's traceback.

    Returns the failure's message, or None when the version did not fail this time.
    """
    from mlpipeline.executors.worker import VersionFailure, run_version

    saved_cwd, saved_argv, saved_path = os.getcwd(), list(sys.argv), list(sys.path)
    saved_env = {name: os.environ.get(name) for name in env}
    os.chdir(project_dir)
    sys.argv = [request.script_path]
    os.environ.update(env)
    try:
        run_version(request, {})
    except VersionFailure as failure:
        cause = failure.__cause__
        if cause is not None and cause.__traceback__ is not None:
            post_mortem(cause.__traceback__)
        return failure.error.message
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return None
