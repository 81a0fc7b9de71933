"""Throughput switches for any LightningModule: channels-last memory format and ``torch.compile``.

Both are run-time choices, not part of the model: they are callbacks, and checkpoints are the same
with or without them.
"""

from __future__ import annotations

import weakref
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from seglab.errors import ConfigError

_compiled: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # compiled in this process


class ChannelsLast(L.Callback):
    """Keeps the module's weights in channels-last (NHWC) memory format: faster convolutions on
    tensor cores, typically with ``bf16-mixed``. Inputs need no conversion: a convolution with
    channels-last weights gives channels-last outputs, and the layers after it follow."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)  # before the optimizer sees the weights


class Compile(L.Callback):
    """``torch.compile`` of a submodule, in place (``nn.Module.compile``): parameter names, and so
    checkpoint keys, stay those of the uncompiled model (``torch.compile(m)`` would prefix them
    with ``_orig_mod.``). For fit, validate and test; not for predict, where images of every size
    would mean recompiles.

    Args:
        module: the submodule's path in the LightningModule (``model``: SegmentationModule's
            network; ``""``: the whole module).
        mode, backend, fullgraph, dynamic, options: ``torch.compile``'s arguments.
    """

    def __init__(
        self,
        module: str = "model",
        mode: Literal["default", "reduce-overhead", "max-autotune"] | None = None,
        backend: str = "inductor",
        fullgraph: bool = False,
        dynamic: bool | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.kwargs = {"mode": mode, "backend": backend, "fullgraph": fullgraph, "dynamic": dynamic}
        if options:
            self.kwargs["options"] = options

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict":
            return
        try:
            target = pl_module.get_submodule(self.module)
        except AttributeError:
            raise ConfigError(
                f"Compile.module: {type(pl_module).__name__} has no submodule {self.module!r}"
            ) from None
        if target not in _compiled:
            target.compile(**self.kwargs)
            _compiled.add(target)
