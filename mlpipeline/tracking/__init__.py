"""Trackers people already use, fed by the daemon: MLflow and TensorBoard (mlp.config's
``tracking``). Each script is an experiment and each version a run; a resumed version goes on
in the same run. Neither library is imported unless configured."""
