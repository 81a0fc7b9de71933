"""Parameters without gradients, found before DDP training starts instead of on every rank mid-run.

DistributedDataParallel averages every parameter's gradient in buckets; a parameter the loss does
not reach never gets one, and the second step stops on every rank with "your LightningModule has
parameters that were not used in producing the loss". ``UnusedParameters`` runs the network once on
a tiny input when ``fit`` sets up (before DDP wraps the module), walks the autograd graph of the
output, and names the parameters that graph does not reach. Cost: one forward pass on a 2-image
batch of 64 px (or the encoder's stride times two), without a backward pass; the model's buffers
(BatchNorm statistics) and the random number generators are restored afterwards.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from seglab.compat import ddp_find_unused_parameters, ddp_finds_unused_parameters
from seglab.errors import ConfigError
from seglab.models.factory import output_stride
from seglab.models.module import SegmentationModule

STRATEGY_HINT = "--trainer.strategy ddp_find_unused_parameters_true"


def _reached(outputs: Any) -> set[int]:
    """The ids of the leaf tensors (parameters) the autograd graph of ``outputs`` reaches."""
    roots = [t.grad_fn for t in _tensors(outputs) if t.grad_fn is not None]
    seen, found = set(), set()
    while roots:
        node = roots.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf tensor
        if variable is not None:
            found.add(id(variable))
        roots.extend(next_node for next_node, _ in node.next_functions)
    return found


def _tensors(outputs: Any) -> list[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [t for item in outputs for t in _tensors(item)]
    return []


def example_input(module: L.LightningModule) -> Any:
    """A tiny input for ``module``: its ``example_input_array`` if it has one, else for a
    ``SegmentationModule`` two images of 64 px (or twice the encoder's stride); None otherwise."""
    example = getattr(module, "example_input_array", None)
    if example is not None:
        return example
    if isinstance(module, SegmentationModule):
        size = max(64, 2 * output_stride(module.model))
        return torch.zeros(2, int(module.hparams.in_channels), size, size)
    return None


def unused_parameters(module: nn.Module, example: Any) -> list[str]:
    """Names of the parameters of ``module`` (those that require gradients) that the output of one
    forward pass on ``example`` in training mode does not depend on. Buffers, training flags and
    random number generators are as they were afterwards."""
    buffers = {name: b.detach().clone() for name, b in module.named_buffers()}
    modes = {m: m.training for m in module.modules()}
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            module.train()
            outputs = module(*example) if isinstance(example, tuple) else module(example)
            reached = _reached(outputs)
            del outputs
    finally:
        for m, training in modes.items():
            m.training = training
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
    return [n for n, p in module.named_parameters() if p.requires_grad and id(p) not in reached]


def summarize(module: nn.Module, names: list[str], shown: int = 6) -> str:
    """``model.encoder.layer4 (15 tensors), ...``: the unused parameters by the outermost modules
    all of whose parameters are unused (a parameter of a partly used module by its own name)."""
    unused = set(names)
    groups: list[tuple[str, int]] = []
    covered: set[str] = set()
    for prefix, sub in module.named_modules():
        params = [f"{prefix}.{n}" if prefix else n for n, _ in sub.named_parameters()]
        if not prefix or not params or not unused.issuperset(params) or covered & set(params):
            continue
        groups.append((prefix, len(params)))
        covered.update(params)
    groups += [(name, 1) for name in names if name not in covered]
    parts = [f"{g} ({n} tensor{'s' if n > 1 else ''})" for g, n in groups[:shown]]
    if len(groups) > shown:
        parts.append(f"... {len(groups) - shown} more")
    return ", ".join(parts)


class UnusedParameters(L.Callback):
    """Under DDP, checks before training that every trainable parameter gets a gradient.

    A parameter the loss does not reach stops a DDP run on its second step, on every rank. This
    check finds them when ``fit`` sets up (one forward pass on a tiny input, see the module's
    docstring) and refuses to start, naming them and the ways out: remove or freeze
    (``requires_grad=False``) what the network does not use, or let DDP look for unused parameters
    at every step (slower) with ``find_unused_parameters``. The ``seglab`` command adds this
    callback to every ``fit``.

    Args:
        find_unused_parameters: True: instead of refusing, turn on DDP's
            ``find_unused_parameters`` (with a notice naming the parameters).
    """

    def __init__(self, find_unused_parameters: bool = False) -> None:
        self.find_unused_parameters = find_unused_parameters
        self.unused: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning calls `setup` before the strategy wraps the module in DDP.
        if stage != "fit" or not isinstance(trainer.strategy, DDPStrategy):
            return
        example = example_input(pl_module)
        if example is None:
            return
        try:
            self.unused = unused_parameters(pl_module, example)
        except Exception:  # a network that needs another input: training itself will tell
            return
        if not self.unused:
            return
        names = summarize(pl_module, self.unused)
        if ddp_finds_unused_parameters(trainer.strategy):
            if trainer.is_global_zero:
                message = f"seglab: DDP finds unused parameters at every step: {names}"
                print(message, file=sys.stderr, flush=True)
            return
        if self.find_unused_parameters:
            ddp_find_unused_parameters(trainer.strategy)
            if trainer.is_global_zero:
                print(
                    f"seglab: {len(self.unused)} parameters get no gradient ({names}); DDP looks "
                    "for unused parameters at every step (find_unused_parameters, slower)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        raise ConfigError(
            f"{len(self.unused)} trainable parameters get no gradient, which DDP refuses: {names}. "
            "Remove or freeze (requires_grad=False) what the network does not use, or let DDP "
            f"look for unused parameters at every step (slower): {STRATEGY_HINT}"
        )
