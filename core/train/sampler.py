"""Deterministic, resumable, rank-sharded batch order over fixed-size items (packed pretraining windows).

Epoch e's order is a permutation drawn from `seed + e` alone, so it never depends on RNG state that a resume
would have to restore. Global micro-batch k is `perm[k·B:(k+1)·B]`; rank r of W takes the contiguous slice
`[r·B/W, (r+1)·B/W)`. The union of the ranks' batches is therefore exactly the 1-rank run's batch, which is what
makes a W-rank run equal a 1-rank run with the same global batch. The last incomplete batch is dropped.
"""
from __future__ import annotations

import torch


class PackedBatchSampler:
    def __init__(self, n_items: int, batch_size: int, seed: int, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, skip_batches: int = 0, shuffle: bool = True):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be a multiple of the number of processes ({world_size})")
        self.n_items, self.batch_size, self.seed, self.epoch = n_items, batch_size, seed, epoch
        self.rank, self.world_size, self.skip_batches, self.shuffle = rank, world_size, skip_batches, shuffle

    def num_batches(self) -> int:
        """Global batches in one epoch (before skipping)."""
        return self.n_items // self.batch_size

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.skip_batches)

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n_items, generator=gen).tolist()
        else:
            order = list(range(self.n_items))
        per_rank = self.batch_size // self.world_size
        for k in range(self.skip_batches, self.num_batches()):
            start = k * self.batch_size + self.rank * per_rank
            yield order[start:start + per_rank]
