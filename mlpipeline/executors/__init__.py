"""The daemon's side of where a version runs: the executor contract (base), the executors,
what crosses to a child (protocol), and how a process tree is watched and ended. What runs
in the child itself is in mlpipeline/child/; ray_task runs on a Ray node, where it drives
the local executor."""
