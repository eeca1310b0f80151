"""Where a version's child runs: the executor contract (base), the local executors, and
the processes they start: keeper, worker, preload server."""
