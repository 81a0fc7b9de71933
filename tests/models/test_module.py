import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from seglab import DataError, SegmentationModule, SyntheticDataModule
from seglab.data.stats import class_pixel_counts
from seglab.losses import class_weights_from_counts
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
    with pytest.raises(ValueError, match=hint):
        module.segment(torch.zeros(shape, dtype=torch.uint8))


def test_data_with_another_normalisation_than_the_models_is_refused():
    module = _module(num_classes=6, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    data = SyntheticDataModule(image_size=32, num_train=4, num_val=2, batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"data.mean \[0.485, 0.456, 0.406\] differs"):
        _trainer(max_steps=1).fit(module, data)


def test_a_checkpoint_of_the_previous_version_still_loads(tmp_path):
    """Version 0.1 saved the run-time options it had then (freezing, the non-finite policy) and
    LightningCLI's ``_instantiator``; they are left out when loading."""
    module = _module()
    old = {**dict(module.hparams), "freeze_encoder_epochs": 0, "nonfinite_loss": "stop"}
    old["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    del old["mean"], old["std"], old["palette"]
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": old,
            "pytorch-lightning_version": "2.6.0",
        },
        tmp_path / "old.ckpt",
    )
    loaded = SegmentationModule.load_from_checkpoint(tmp_path / "old.ckpt")
    assert loaded.hparams.num_classes == 3 and loaded.hparams.mean is None
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, module.state_dict()[name])


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
    module = _module(num_classes=6, class_weights="median_frequency")
    trainer = _trainer(max_steps=1)
    trainer.fit(module, data)
    expected = class_weights_from_counts(
        class_pixel_counts(data.train_dataset()), "median_frequency"
    )
    assert module.hparams.class_weights == pytest.approx(expected)
    assert module.criterion.losses["ce"].weight.tolist() == pytest.approx(expected)
    trainer.save_checkpoint(tmp_path / "w.ckpt")
    loaded = SegmentationModule.load_from_checkpoint(tmp_path / "w.ckpt")
    assert loaded.criterion.losses["ce"].weight.tolist() == pytest.approx(expected)


def test_class_weights_need_a_data_module_that_has_training_masks():
    module = _module(class_weights="inverse_frequency")
    with pytest.raises(ValueError, match=r"model.class_weights: inverse_frequency counts"):
        _trainer(max_steps=1).fit(module, _tuple_loader())


def test_warmup_ratio_is_a_share_of_the_run():
    lrs = []

    class RecordLR(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    module = _module(lr=0.1, warmup_ratio=0.5, scheduler="constant")
    trainer = _trainer(max_steps=4, callbacks=[RecordLR()], num_sanity_val_steps=0)
    trainer.fit(module, _tuple_loader(n=16, batch_size=4))
    base = 0.1 * module.hparams.backbone_lr_mult  # the first group is the encoder's
    assert lrs == pytest.approx([base * 0.5, base * 1.0, base, base])  # 2 of 4 steps warm up
    with pytest.raises(ValueError, match="give one, not both"):
        _module(warmup_steps=10, warmup_ratio=0.1)


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
