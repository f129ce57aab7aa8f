"""The epoch sampler every trainer uses: shuffled, seeded, sharded by rank, resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler, Sampler


class EpochSampler(Sampler):
    """A :class:`DistributedSampler` (shuffled, seeded, sharded by rank) that yields
    ``(epoch, index)`` and can start part-way through an epoch (for mid-epoch resume).

    Works unchanged in a single process (``num_replicas=1, rank=0``).
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation; skip its first ``start`` samples of this rank."""
        self.inner.set_epoch(epoch)
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for k, index in enumerate(self.inner):
            if k >= self.start:
                yield (self.epoch, index)

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.start)
