"""Failures that say all there is to say: what is wrong and what to do. A version that ends in
one is recorded with its message alone, no traceback: there is nothing to debug in the
user's code (a missing extra, a checkpoint file that cannot be read)."""
from __future__ import annotations


class ExplainedFailure(Exception):
    """Raised by mlpipeline's own code for the user to read, not to debug."""
