"""Which samples each training step sees, so that a resumed run sees what an uninterrupted one did.

The samples of every epoch are shuffled by a seeded permutation of their own; the epochs are
laid end to end and cut into batches. Step ``s`` (0-based) takes stream positions
``[s * batch_size, (s + 1) * batch_size)``, and position ``p`` is sample
``permutation(p // n)[p % n]``. This matches the pipeline's step count,
``ceil(epochs * n / batch_size)``, and it depends on nothing but the seed and the step, so a
run resumed at step ``s`` gets the very batches the uninterrupted run got from ``s`` on.
"""
from __future__ import annotations

import random
from typing import List, Optional


class StreamOrder:
    """The sample order of one training run: ``indices(step)`` is the batch of step ``step``."""

    def __init__(self, sample_count: int, batch_size: int, seed: int, shuffle: bool = True) -> None:
        if sample_count <= 0:
            raise ValueError(f"there are no samples to train on (sample count {sample_count})")
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, not {batch_size}")
        self.sample_count = sample_count
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self._epoch: Optional[int] = None
        self._permutation: List[int] = []

    def permutation(self, epoch: int) -> List[int]:
        """The order of the samples in ``epoch``: the same for the same seed, on any machine."""
        if epoch != self._epoch:
            order = list(range(self.sample_count))
            if self.shuffle:
                # A string seed is hashed with SHA-512 by random.Random: stable across Python versions.
                random.Random(f"mlpipeline:{self.seed}:{epoch}").shuffle(order)
            self._epoch, self._permutation = epoch, order
        return self._permutation

    def indices(self, step: int) -> List[int]:
        """The sample indices of 0-based training step ``step``."""
        start = step * self.batch_size
        batch = []
        for position in range(start, start + self.batch_size):
            epoch, offset = divmod(position, self.sample_count)
            batch.append(self.permutation(epoch)[offset])
        return batch

