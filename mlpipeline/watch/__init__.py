"""What a person watching sees: the console while the queue runs, ``mlpipeline status``."""
