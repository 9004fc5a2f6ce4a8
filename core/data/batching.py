"""Batches: padding collators and a deterministic, length-grouped, rank-sharded batch sampler."""
from __future__ import annotations

import numpy as np
import torch


def _as_long(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.long)


def pad_sequences(seqs: list, value: int, length: int | None = None) -> torch.Tensor:
    """Right-pad 1-D sequences into a (B, T) LongTensor."""
    seqs = [_as_long(s) for s in seqs]
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def collate_pad(batch: list[dict], pad_id: int = 0) -> dict:
    """Right-pad `input_ids` with pad_id and `labels` with -100; `attention_mask` is 1 on real tokens."""
    ids = [_as_long(b["input_ids"]) for b in batch]
    length = max(len(s) for s in ids)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, s in enumerate(ids):
        mask[i, : len(s)] = 1
    return {"input_ids": pad_sequences(ids, pad_id, length),
            "labels": pad_sequences([b["labels"] for b in batch], -100, length),
            "attention_mask": mask}


def collate_dpo(batch: list[dict], pad_id: int = 0) -> dict:
    """Pad chosen and rejected to one length and stack them as [chosen; rejected] (2B rows, chosen first)."""
    ids = [b["chosen_ids"] for b in batch] + [b["rejected_ids"] for b in batch]
    labels = [b["chosen_labels"] for b in batch] + [b["rejected_labels"] for b in batch]
    return collate_pad([{"input_ids": i, "labels": l} for i, l in zip(ids, labels)], pad_id)


class LengthGroupedBatchSampler:
    """Batches of similar length, in a shuffled but deterministic order, split across ranks.

    Order for one epoch (the same on every rank): permute all indices with (seed, epoch); cut the permutation into
    mega-chunks of `mega_batches * batch_size`; sort each chunk by length (longest first) and cut it into global
    batches of `batch_size`; shuffle the batch order; put the batch holding the longest sample first, so an
    out-of-memory error shows at step 0 rather than hours in.
    `batch_size` is the GLOBAL batch size: rank r yields the r-th contiguous slice (batch_size / world_size) of every
    global batch, so N ranks see exactly the samples one rank would see with the same batch_size.
    `skip_batches` starts the epoch at the k-th global batch (exact resume).
    """

    def __init__(self, lengths, batch_size: int, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, skip_batches: int = 0, mega_batches: int = 50):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..world_size-1 ({world_size})")
        if batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} must be a multiple of world_size {world_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self.rank, self.world_size = rank, world_size
        self.drop_last, self.skip_batches, self.mega_batches = drop_last, skip_batches, mega_batches

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def global_batches(self) -> list[np.ndarray]:
        """All global batches of this epoch, before skipping and sharding."""
        n, bs = len(self.lengths), self.batch_size
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        chunk = bs * self.mega_batches
        batches = []
        for start in range(0, n, chunk):
            part = perm[start:start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches += [part[i:i + bs] for i in range(0, len(part), bs)]
        # Only the very last batch of the epoch may be short; a short one inside a chunk cannot happen.
        if batches and len(batches[-1]) < bs and (self.drop_last or len(batches[-1]) < self.world_size):
            batches.pop()  # with several ranks a batch smaller than world_size would leave a rank empty
        if not batches:
            return []
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        longest = max(range(len(batches)), key=lambda i: self.lengths[batches[i]].max())
        batches.insert(0, batches.pop(longest))
        return batches

    def __iter__(self):
        for batch in self.global_batches()[self.skip_batches:]:
            yield np.array_split(batch, self.world_size)[self.rank].tolist()

    def __len__(self) -> int:
        n, bs = len(self.lengths), self.batch_size
        full, rest = divmod(n, bs)
        total = full + (1 if rest and not self.drop_last and rest >= self.world_size else 0)
        return max(0, total - self.skip_batches)
