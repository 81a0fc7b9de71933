"""FreezeEncoder keeps a frozen encoder's weights and norm statistics, then fine-tunes it."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from seglab.callbacks import FreezeEncoder, NonFiniteLoss
from tests.callbacks.conftest import loader, trainer


def test_frozen_encoder_keeps_weights_and_norm_statistics_then_unfreezes(make_module):
    module = make_module(lr=0.05)
    before = {k: v.clone() for k, v in module.model.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in module.model.decoder.state_dict().items()}
    after_epoch = {}

    class Snapshot(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            after_epoch[trainer.current_epoch] = {
                k: v.clone() for k, v in pl_module.model.encoder.state_dict().items()
            }

    callbacks = [FreezeEncoder(epochs=1), Snapshot()]
    trainer(max_epochs=2, callbacks=callbacks).fit(module, loader(n=8), loader(n=4))
    frozen = after_epoch[0]
    assert any("running_mean" in k for k in frozen)
    for k, v in before.items():
        assert torch.equal(frozen[k], v), f"{k} moved while the encoder was frozen"
    assert any(
        not torch.equal(v, module.model.decoder.state_dict()[k]) for k, v in decoder_before.items()
    )
    unfrozen = after_epoch[1]
    moved = [k for k, v in before.items() if not torch.equal(unfrozen[k], v)]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)


class PlainModule(L.LightningModule):
    """Another project's module: a backbone with BatchNorm, a head, its own optimizer."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 3, 1)
        self.nan_at: int | None = None

    def training_step(self, batch, batch_idx):
        image, mask = batch
        loss = nn.functional.cross_entropy(self.head(self.backbone(image)), mask.long())
        return loss * math.nan if self.global_step == self.nan_at else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_pieces_compose_into_a_module_that_is_not_seglabs():
    module = PlainModule()
    module.nan_at = 5  # in the second epoch, once the backbone trains
    backbone = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    guard = NonFiniteLoss("skip")
    callbacks = [FreezeEncoder(epochs=1, module="backbone"), guard]
    trainer(max_epochs=2, callbacks=callbacks).fit(module, loader(n=8, batch_size=2))
    assert guard.skipped == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
    moved = [k for k, v in backbone.items() if not torch.equal(module.backbone.state_dict()[k], v)]
    assert "1.running_mean" in moved and "0.weight" in moved  # trained after the frozen epoch


def test_a_frozen_module_keeps_its_statistics_in_a_plain_module():
    module = PlainModule()
    stats = module.backbone[1].running_mean.clone()
    trainer(max_epochs=1, callbacks=[FreezeEncoder(epochs=1, module="backbone")]).fit(
        module, loader(n=4)
    )
    assert torch.equal(module.backbone[1].running_mean, stats)
