import functools

import lightning as L
import pytest
import torch
from lightning.pytorch.core.mixins import HyperparametersMixin
from torch.utils.data import DataLoader, TensorDataset

from seglab import DataError, SegmentationModule, SyntheticDataModule
from seglab.data.stats import class_pixel_counts
from seglab.errors import ConfigError
from seglab.losses import (
    CrossEntropyLoss,
    OhemCrossEntropyLoss,
    WeightedSum,
    class_weights_from_counts,
)
from seglab.optim import PolyLR, WarmupLR


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


class RecordLR(L.Callback):
    """Every group's learning rate at the start of every training batch, by group name."""

    def __init__(self) -> None:
        self.lrs: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})


def test_the_schedule_steps_every_iteration_and_the_encoder_keeps_its_multiplier():
    schedule = functools.partial(PolyLR, warmup_steps=2, power=1.0)
    module = _module(lr=0.1, backbone_lr_mult=0.5, lr_scheduler=schedule)
    record = RecordLR()
    trainer = _trainer(max_epochs=3, callbacks=[record], num_sanity_val_steps=0)
    trainer.fit(module, _tuple_loader(n=8, batch_size=4))  # 2 steps per epoch, 6 in all
    factors = [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]  # warm-up for 2 steps, then linear to 0 at step 6
    assert len(record.lrs) == 6
    for lrs, factor in zip(record.lrs, factors, strict=True):
        assert lrs["head"] == lrs["head_no_decay"] == pytest.approx(0.1 * factor)
        assert lrs["backbone"] == lrs["backbone_no_decay"] == pytest.approx(0.05 * factor)


def test_injected_loss_optimizer_and_schedule_are_the_ones_used():
    module = _module(
        loss=OhemCrossEntropyLoss(threshold=0.6, min_kept=10),
        optimizer=functools.partial(torch.optim.SGD, momentum=0.5),
        lr_scheduler=None,
        lr=0.02,
        weight_decay=0.001,
    )
    trainer = _trainer(max_steps=2, num_sanity_val_steps=0)
    trainer.fit(module, _tuple_loader())
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is torch.optim.SGD and not trainer.lr_scheduler_configs
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["head"]["momentum"] == 0.5 and groups["head"]["lr"] == 0.02
    assert groups["backbone"]["lr"] == pytest.approx(0.002)  # lr * backbone_lr_mult 0.1
    assert groups["head"]["weight_decay"] == 0.001 and groups["head_no_decay"]["weight_decay"] == 0
    assert module.criterion.ignore_index == 255  # the module's, given to the loss


def test_without_lr_and_weight_decay_the_optimizers_own_apply():
    optimizer = functools.partial(torch.optim.AdamW, lr=0.004, weight_decay=0.02)
    module = _module(optimizer=optimizer, lr_scheduler=None)
    trainer = _trainer(max_steps=1, num_sanity_val_steps=0)
    trainer.fit(module, _tuple_loader())
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert groups["head"]["lr"] == 0.004 and groups["backbone"]["lr"] == pytest.approx(0.0004)
    assert (
        groups["head"]["weight_decay"] == 0.02 and groups["backbone_no_decay"]["weight_decay"] == 0
    )


def test_a_learning_rate_given_twice_is_the_modules_and_says_so():
    optimizer = functools.partial(torch.optim.AdamW, lr=0.01)
    module = _module(optimizer=optimizer, lr_scheduler=None, lr=0.02)
    trainer = _trainer(max_steps=1, num_sanity_val_steps=0)
    with pytest.warns(
        UserWarning, match=r"model.lr 0.02 replaces model.optimizer.init_args.lr 0.01"
    ):
        trainer.fit(module, _tuple_loader())
    assert {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}["head"] == 0.02


def test_the_loss_runs_in_float32_under_autocast():
    module = _module(loss={"ce": 1.0, "dice": 1.0})
    logits = torch.randn(2, 3, 8, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = module.loss(logits, torch.randint(0, 3, (2, 8, 8)))
    assert value.dtype == torch.float32


class TinyNet(HyperparametersMixin, torch.nn.Module):
    """A network that is not smp's: a conv encoder and a 1x1 head. It records its arguments
    (``save_hyperparameters``), so that checkpoints rebuild it."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(in_channels, width, 3, padding=1))
        self.head = torch.nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.head(torch.relu(self.encoder(x)))


def test_a_network_of_ones_own_trains_with_its_encoder_as_the_backbone():
    module = _module(network=TinyNet(), lr=0.1, backbone_lr_mult=0.5)
    record = RecordLR()
    _trainer(max_steps=1, callbacks=[record]).fit(module, _tuple_loader())
    groups = {g["name"]: g for g in module.trainer.optimizers[0].param_groups}
    assert [p is module.model.encoder[0].weight for p in groups["backbone"]["params"]] == [True]
    assert record.lrs[0]["backbone"] == pytest.approx(0.5 * record.lrs[0]["head"])
    assert module.metadata()["arch"].endswith("test_module.TinyNet")


def test_a_network_without_an_encoder_or_with_the_wrong_outputs_is_refused_by_name():
    class Plain(torch.nn.Module):
        def __init__(self, num_classes: int = 3) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, num_classes, 1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(
        ConfigError, match=r"backbone_lr_mult 0\.1: the network Plain has no encoder"
    ):
        _trainer(max_steps=1).fit(_module(network=Plain()), _tuple_loader())
    _trainer(max_steps=1).fit(_module(network=Plain(), backbone_lr_mult=1.0), _tuple_loader())
    with pytest.raises(ConfigError, match="returns 5 channels but num_classes is 3"):
        _trainer(max_steps=1).fit(
            _module(network=Plain(num_classes=5), backbone_lr_mult=1.0), _tuple_loader()
        )


def test_a_checkpoint_rebuilds_the_injected_parts(tmp_path):
    """Built in Python, the parts are recorded as class paths and arguments: the checkpoint alone
    rebuilds them (read with weights_only=True)."""
    loss = WeightedSum([CrossEntropyLoss(label_smoothing=0.1), OhemCrossEntropyLoss(min_kept=5)])
    module = _module(
        network=TinyNet(width=4),
        backbone_lr_mult=1.0,
        loss=loss,
        optimizer=functools.partial(torch.optim.RAdam, betas=(0.8, 0.9)),
        lr_scheduler=functools.partial(WarmupLR, warmup_steps=3),
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
    )
    trainer = _trainer(max_steps=1)
    trainer.fit(module, _tuple_loader())
    trainer.save_checkpoint(tmp_path / "own.ckpt")
    loaded = SegmentationModule.load_from_checkpoint(tmp_path / "own.ckpt")
    assert isinstance(loaded.model, TinyNet) and loaded.model.head.in_channels == 4
    assert [type(x) for x in loaded.criterion.losses] == [CrossEntropyLoss, OhemCrossEntropyLoss]
    assert loaded.criterion.losses[0].label_smoothing == 0.1
    assert loaded.criterion.losses[1].min_kept == 5
    assert loaded.optimizer.keywords["betas"] == (0.8, 0.9)
    image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8)
    assert torch.equal(loaded.segment(image), module.segment(image))


def test_parts_that_cannot_be_recorded_are_named():
    with pytest.warns(UserWarning, match=r"model.optimizer is not recorded in checkpoints"):
        _module(optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    with pytest.warns(UserWarning, match=r"model.loss is not recorded .*L1Loss without hparams"):
        _module(loss=torch.nn.L1Loss())


class WithAuxiliaryHead(SegmentationModule):
    """A client's subclass: an extra layer and a bare parameter, used in its training step."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.aux = torch.nn.Conv2d(3, 3, 1)
        self.temperature = torch.nn.Parameter(torch.ones(()))

    def training_step(self, batch, batch_idx):
        image, mask = batch
        logits = self(image) / self.temperature + self.aux(image)
        return torch.nn.functional.cross_entropy(logits, mask[:, 0].long())


def test_parameters_a_subclass_adds_are_trained():
    module = WithAuxiliaryHead(arch="unet", encoder_name="tu-test_resnet", num_classes=3)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    _trainer(max_steps=1).fit(module, _tuple_loader())
    changed = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    assert {"aux.weight", "aux.bias", "temperature"} <= changed
    groups = {g["name"]: g for g in module.trainer.optimizers[0].param_groups}
    assert any(p is module.aux.weight for p in groups["head"]["params"])  # lr, weight decay
    assert any(p is module.temperature for p in groups["head_no_decay"]["params"])  # 0-d: no decay


def test_the_checkpoint_records_how_to_feed_the_model(tmp_path):
    data = SyntheticDataModule(
        image_size=32,
        num_train=4,
        num_val=2,
        batch_size=2,
        num_workers=0,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )
    module = _module(num_classes=6)
    trainer = _trainer(max_steps=1)
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = SegmentationModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.mean == (0.5, 0.4, 0.3) and loaded.hparams.std == (0.2, 0.25, 0.3)
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    normalised = (
        image.float() / 255 - torch.tensor([0.5, 0.4, 0.3])[:, None, None]
    ) / torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    with torch.no_grad():
        expected = loaded.eval()(normalised[None]).argmax(1)[0]
    assert torch.equal(loaded.segment(image), expected)


@pytest.mark.parametrize(
    ("shape", "hint"),
    [((40, 50, 3), "channels last"), ((1, 40, 50), "grey image"), ((40, 50), r"got \(40, 50\)")],
)
def test_segment_refuses_images_it_would_misread(shape, hint):
    """An HWC array (as PIL and numpy give) or a grey image is refused with what to do, not
    misread through broadcasting."""
    module = _module(num_classes=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match=hint):
        module.segment(torch.zeros(shape, dtype=torch.uint8))


def test_data_with_another_normalisation_than_the_models_is_refused():
    module = _module(num_classes=6, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    data = SyntheticDataModule(image_size=32, num_train=4, num_val=2, batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"data.mean \[0.485, 0.456, 0.406\] differs"):
        _trainer(max_steps=1).fit(module, data)


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


def test_class_weights_from_the_training_masks_are_computed_once_and_kept(tmp_path):
    """``median_frequency`` becomes numbers when fit starts: those of the training split's masks
    (the same as the rule applied to the split's class counts), used by the loss, saved in the
    checkpoint, and a model loaded from it needs no data to know them."""
    data = SyntheticDataModule(image_size=32, num_train=6, num_val=2, batch_size=2, num_workers=0)
    module = _module(num_classes=6, loss=CrossEntropyLoss(class_weights="median_frequency"))
    trainer = _trainer(max_steps=1)
    trainer.fit(module, data)
    counts = class_pixel_counts(data.train_dataset(), 6, 255)
    expected = class_weights_from_counts(counts, "median_frequency")
    assert module.criterion.weight.tolist() == pytest.approx(expected)
    trainer.save_checkpoint(tmp_path / "w.ckpt")
    loaded = SegmentationModule.load_from_checkpoint(tmp_path / "w.ckpt")
    assert loaded.criterion.weight.tolist() == pytest.approx(expected)


def test_class_weights_need_a_data_module_that_has_training_masks():
    module = _module(loss=CrossEntropyLoss(class_weights="inverse_frequency"))
    with pytest.raises(ConfigError, match=r"class_weights: inverse_frequency .* data module"):
        _trainer(max_steps=1).fit(module, _tuple_loader())


def test_warmup_ratio_is_a_share_of_the_run():
    record = RecordLR()
    module = _module(lr=0.1, lr_scheduler=functools.partial(WarmupLR, warmup_ratio=0.5))
    trainer = _trainer(max_steps=4, callbacks=[record], num_sanity_val_steps=0)
    trainer.fit(module, _tuple_loader(n=16, batch_size=4))
    assert [lrs["head"] for lrs in record.lrs] == pytest.approx([0.05, 0.1, 0.1, 0.1])


def _labels_loader(bad_value: int) -> DataLoader:
    images = torch.randn(4, 3, 32, 32)
    masks = torch.randint(0, 3, (4, 32, 32))
    masks[1, 5, :4] = bad_value
    masks[2, 0, 0] = 255  # ignore_index: fine
    return DataLoader(TensorDataset(images, masks), batch_size=2)


@pytest.mark.parametrize("bad_value", [7, -1])
def test_mask_values_that_are_neither_classes_nor_ignored_stop_training_by_name(bad_value):
    """Someone else's data with a label the model does not have: a clear error (on a GPU, the loss
    would otherwise end the run with a device-side assert), not a crash inside the loss."""
    module = _module(num_classes=3)
    message = rf"4 pixels of the train masks .* 0..2 nor ignore_index 255 \(largest: {bad_value}\)"
    with pytest.raises(DataError, match=message):
        _trainer(max_steps=2).fit(module, _labels_loader(bad_value))


def test_mask_values_that_are_neither_classes_nor_ignored_stop_validation_by_name():
    module = _module(num_classes=3)
    trainer = _trainer(max_steps=1)
    with pytest.raises(DataError, match=r"4 pixels of the val masks .*\(largest: 9\)"):
        trainer.validate(module, _labels_loader(9))
    assert trainer.validate(module, _labels_loader(255))[0]["val/mIoU"] >= 0


def test_validate_then_fit_then_validate_with_one_module():
    """The label counts made under validate()'s inference mode do not break fit's validation."""
    module = _module(num_classes=3)
    trainer = _trainer(max_steps=2, num_sanity_val_steps=0)
    trainer.validate(module, _labels_loader(255))
    trainer.fit(module, _labels_loader(255), _labels_loader(255))
    assert trainer.validate(module, _labels_loader(255))[0]["val/mIoU"] >= 0
