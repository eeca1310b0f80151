"""What the public script API (helper, utils, pytorch, tensorflow) stands on, inside the
script's own process: versions, the order of samples, optional frameworks, the event pipe.
A model script imports the public modules, never these."""
