"""Every evaluation sample counted once under DDP, whatever the data module.

Lightning gives a data module's validation and test loaders a ``DistributedSampler`` that pads the
split with repeated samples so that all processes run equally many batches; summed metric counts
would count those samples twice. The padding is the tail of each process's share (process ``r`` of
``w`` takes positions ``r, r + w, ...`` of the padded list, whose last positions repeat its start),
so the real samples of a process are its first ``len(range(r, N, w))``: the ones after them are left
out of the counts. seglab's own data modules use a sampler that pads nothing.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from seglab.errors import ConfigError


def real_samples(loader: Any, batch_idx: int, batch_len: int) -> int:
    """How many leading samples of batch ``batch_idx`` of ``loader`` are real (not padding)."""
    sampler = getattr(loader, "sampler", None)
    if not isinstance(loader, DataLoader) or not isinstance(sampler, DistributedSampler):
        return batch_len
    total = len(sampler.dataset)
    if sampler.total_size == total:
        return batch_len
    if sampler.total_size < total:
        raise ConfigError(
            "the evaluation loader's DistributedSampler drops samples (drop_last=True): the "
            "metrics would miss them; evaluate without drop_last"
        )
    batches = loader.batch_sampler
    if type(batches) is not BatchSampler or batches.drop_last:
        raise ConfigError(
            f"cannot tell which samples of the evaluation loader's {type(batches).__name__} are "
            "padding repeats of Lightning's DistributedSampler; give the loader a sampler that "
            "pads nothing (lightning.pytorch.overrides.distributed.UnrepeatedDistributedSampler)"
        )
    own = len(range(sampler.rank, total, sampler.num_replicas))
    return max(0, min(batch_len, own - batch_idx * batches.batch_size))
