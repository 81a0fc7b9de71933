import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from seglab import SegmentationModule
from seglab.optim import lr_factor


def _module(**kwargs) -> SegmentationModule:
    kwargs.setdefault("num_classes", 3)
    return SegmentationModule(arch="unet", encoder_name="tu-test_resnet", **kwargs)


def _tuple_loader(n: int = 8, size: int = 32, batch_size: int = 4) -> DataLoader:
    """Someone else's data: (image, mask) tuples, masks (N, 1, H, W) uint8."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    masks = (images[:, :1] > 0).to(torch.uint8) + (images[:, 1:2] > 1).to(torch.uint8)
    return DataLoader(TensorDataset(images, masks), batch_size=batch_size)


def _trainer(**kwargs) -> L.Trainer:
    kwargs.setdefault("max_epochs", 1)
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (96, 33)])
def test_forward_returns_logits_of_the_input_size(size):
    module = _module().eval()
    with torch.no_grad():
        logits = module(torch.randn(2, 3, *size))
    assert logits.shape == (2, 3, *size)


def test_plain_trainer_fits_tuples_and_dicts_from_other_data_modules():
    module = _module()
    _trainer(max_steps=2).fit(module, _tuple_loader(), _tuple_loader())
    assert "val/mIoU" in _trainer().validate(module, _tuple_loader(), verbose=False)[0]
    dicts = [{"image": image, "mask": mask[0]} for image, mask in _tuple_loader().dataset]
    trainer = _trainer(max_steps=2)
    trainer.fit(module, DataLoader(dicts, batch_size=4), DataLoader(dicts, batch_size=4))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_scheduler_steps_every_iteration():
    lrs = []

    class RecordLR(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    module = _module(lr=0.1, backbone_lr_mult=0.5, warmup_steps=2, scheduler="poly", poly_power=1.0)
    trainer = _trainer(max_epochs=3, callbacks=[RecordLR()], num_sanity_val_steps=0)
    trainer.fit(module, _tuple_loader(n=8, batch_size=4))  # 2 steps per epoch, 6 in all
    f = lr_factor("poly", 6, 2, power=1.0)
    assert len(lrs) == 6
    for step, group_lrs in enumerate(lrs):
        # head groups at lr, backbone groups at lr * backbone_lr_mult, all scaled by the schedule
        assert sorted(set(round(x, 12) for x in group_lrs)) == sorted(
            {round(0.1 * f(step), 12), round(0.05 * f(step), 12)}
        )
    assert lrs[0] != lrs[1] and lrs[3] != lrs[4]  # changed within an epoch, not once per epoch


def test_frozen_encoder_keeps_weights_and_norm_statistics_then_unfreezes():
    module = _module(freeze_encoder_epochs=1, lr=0.05)
    before = {k: v.clone() for k, v in module.model.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in module.model.decoder.state_dict().items()}
    after_epoch = {}

    class Snapshot(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            after_epoch[trainer.current_epoch] = {
                k: v.clone() for k, v in pl_module.model.encoder.state_dict().items()
            }

    _trainer(max_epochs=2, callbacks=[Snapshot()]).fit(module, _tuple_loader(), _tuple_loader())
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


def test_class_names_must_match_num_classes():
    with pytest.raises(ValueError, match="class_names has 2 entries but num_classes is 3"):
        _module(class_names=["a", "b"])


def test_unknown_architecture_and_encoder_name_the_choices():
    with pytest.raises(ValueError, match=r"unknown architecture 'unett'.*unet, unetplusplus"):
        SegmentationModule(arch="unett", num_classes=2)
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet19'.*resnet18"):
        SegmentationModule(encoder_name="resnet19", num_classes=2)
    with pytest.raises(ValueError, match="timm has no model 'nope'"):
        SegmentationModule(encoder_name="tu-nope", num_classes=2)
