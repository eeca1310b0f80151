"""mlpipeline: a queue daemon that runs every version of every queued model script.

A model script imports only the public modules at this level: ``mlpipeline.helper``
(Model, DataLoader), ``mlpipeline.utils`` (Versions, log, mode keys), ``mlpipeline.pytorch``
and ``mlpipeline.tensorflow``. Everything in the subpackages is internal; docs/architecture.md
maps them.
"""

__version__ = "0.1.0"
