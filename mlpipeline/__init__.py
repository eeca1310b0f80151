"""mlpipeline: a queue daemon that runs every version of every queued model script."""

__version__ = "0.1.0"
