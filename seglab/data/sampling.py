"""Rare-class sampling (DAFormer's rule, Hoyer et al., CVPR 2022): train more often on samples, and
crop more often around pixels, of classes that cover few pixels of the training set.

With ``f_c`` the share of labelled training pixels of class ``c`` (classes that never occur left
out) and ``T`` the temperature, a class is drawn with ``P(c) = softmax((1 - f_c) / T)``, then one of
the ``N_c`` samples containing it uniformly, and the crop is centred on a random pixel of that
class. Drawing the sample first and the class given the sample is the same joint draw, which is how
it is done here: the sampler draws sample ``i`` with probability ``sum_c P(c) [c in i] / N_c``, and
the crop (``seglab.data.transforms.RandomScaleCrop``) draws the class among those present in the
sample with probability proportional to ``P(c) / N_c`` (its ``class_weights``). A small ``T``
(DAFormer: 0.01) samples rare classes much more often; a large one tends to sampling every class
alike. Samples without a labelled pixel are never drawn. The number of samples per epoch stays the
size of the training set (drawn with replacement).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Sampler

from seglab.errors import ConfigError, DataError


@dataclass
class RareClassSampling:
    """``data.init_args.rare_class_sampling`` (``null``: off).

    Args:
        temperature: ``T`` of ``P(c) = softmax((1 - f_c) / T)``; smaller favours rare classes more.
    """

    temperature: float = 0.01

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(
                f"data.rare_class_sampling.temperature must be > 0, got {self.temperature}"
            )

    def probabilities(self, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """From per-sample class pixel counts ``(N, C)`` (``seglab.data.stats``): the class
        probabilities ``P(c)`` ``(C,)``, each sample's probability of being drawn ``(N,)`` and the
        crop's class weights ``P(c) / N_c`` ``(C,)`` (0 for classes that never occur)."""
        counts = counts.double()
        present = counts > 0
        total = counts.sum(0)
        if total.sum() == 0:
            raise DataError("data.rare_class_sampling: the training set has no labelled pixel")
        freq = total / total.sum()
        logits = ((1 - freq) / self.temperature).masked_fill(total == 0, float("-inf"))
        class_prob = torch.softmax(logits, dim=0)
        class_weights = class_prob / present.sum(0).clamp(min=1)
        return class_prob, present.double() @ class_weights, class_weights


class RareClassSampler(Sampler[int]):
    """Draws ``num_samples`` indices with replacement, index ``i`` with probability proportional to
    ``weights[i]``. The draw depends on ``seed`` and the epoch only (``set_epoch``, which Lightning
    calls every epoch, also through the ``DistributedSamplerWrapper`` it puts around this sampler
    under DDP): every process draws the same list, and the wrapper gives each its share of it."""

    def __init__(self, weights: Tensor, num_samples: int, seed: int | None = None) -> None:
        if seed is None:  # seed_everything's seed, as Lightning's own distributed samplers use
            seed = os.environ.get("PL_GLOBAL_SEED")
            seed = int(seed) if seed is not None else int(torch.randint(2**31, ()))
        self.weights = weights.double()
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.num_samples, True, generator=generator)
        return iter(draw.tolist())
