"""Train the decoder on a frozen pretrained encoder first, then fine-tune everything.

Freezing by ``requires_grad=False`` alone would still move the encoder's BatchNorm statistics (they
update in training mode, gradients or not), so the frozen encoder's norm layers are also kept in
evaluation mode, checked before every training batch (whatever else switched modes meanwhile).
Frozen parameters stay in the optimizer: they simply get no gradient (under DDP that needs
``find_unused_parameters``) and train again once unfrozen.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn

from seglab.compat import ddp_finds_unused_parameters
from seglab.errors import ConfigError


class FreezeEncoder(L.Callback):
    """Freezes a submodule (weights and norm statistics) for the first ``epochs`` epochs.

    Args:
        epochs: number of epochs with the submodule frozen.
        module: the submodule's path in the LightningModule (``model.encoder`` in
            ``SegmentationModule``; any path in another project's module).
    """

    def __init__(self, epochs: int = 1, module: str = "model.encoder") -> None:
        if epochs < 0:
            raise ConfigError(f"FreezeEncoder.epochs must not be negative, got {epochs}")
        self.epochs, self.module = epochs, module
        self.frozen = False

    def _target(self, pl_module: L.LightningModule) -> nn.Module:
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError:
            raise ConfigError(
                f"FreezeEncoder.module: {type(pl_module).__name__} has no submodule {self.module!r}"
            ) from None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._target(pl_module)
        if self.epochs > 0 and not ddp_finds_unused_parameters(trainer.strategy):
            raise ConfigError(
                "FreezeEncoder under DDP needs trainer.strategy: ddp_find_unused_parameters_true "
                "(frozen weights get no gradient)"
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = trainer.current_epoch < self.epochs
        if frozen != self.frozen:
            target = self._target(pl_module)
            for param in target.parameters():
                param.requires_grad_(not frozen)
            if not frozen:
                target.train(pl_module.training)  # its norm layers learn statistics again
            self.frozen = frozen

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.frozen:
            for layer in self._target(pl_module).modules():
                if getattr(layer, "running_mean", None) is not None:  # statistics that move
                    layer.eval()
