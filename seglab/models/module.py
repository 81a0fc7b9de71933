"""``SegmentationModule``: the network, its loss, its metrics and its optimizer, and nothing else.

Its parts are injected (Lightning's way: ``class_path``/``init_args`` in a config, objects in
Python): the ``network`` (or an smp/classic one built from ``arch``/``encoder_name``), the ``loss``,
the ``optimizer`` and the ``lr_scheduler``. Run-time policies are callbacks any module can use
(``seglab.callbacks``: ``NonFiniteLoss``, ``FreezeEncoder``, ``ChannelsLast``, ``Compile``); class
weights computed from the training masks come from the data side (``seglab.models.class_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric

from seglab.compat import INSTANTIATOR, INSTANTIATOR_KEY, recorded_config
from seglab.data.batch import unpack_batch
from seglab.data.normalize import check_normalization, normalize
from seglab.errors import ConfigError, DataError
from seglab.inference import Inference, predict_logits
from seglab.losses import LossName, bind_ignore_index, build_loss, needing_class_counts
from seglab.metrics import ConfusionMatrix, metric_dict
from seglab.models.class_weights import ClassWeightsFromData
from seglab.models.evaluation import real_samples
from seglab.models.factory import Arch, create_model, output_stride
from seglab.models.param_groups import param_groups
from seglab.models.recorded import UNRECORDED, class_path, describe
from seglab.optim import PolyLR, apply_lr_mults, build_scheduler, resolve, scheduled_lrs

# What a trained model records so that its checkpoint alone says how to feed it and show its output.
DATA_SETTINGS = ("mean", "std", "palette")
INJECTED = ("network", "loss", "optimizer", "lr_scheduler")

LABEL_CHECK_EVERY = 50  # training steps between two checks of the masks' values (see labels)
NO_INVALID_LABELS = (0, torch.iinfo(torch.long).min)  # (count, largest value) before any is seen


class SegmentationModule(L.LightningModule):
    """Semantic segmentation with any smp architecture and smp/timm encoder, a classic one, or your
    own network; any loss, optimizer and learning-rate schedule.

    Args:
        network: your own network (any ``nn.Module`` mapping ``(N, in_channels, H, W)`` images to
            ``(N, num_classes, H, W)`` logits), instead of ``arch``/``encoder_name``. Its
            ``encoder`` attribute, when it has one, is the backbone (``backbone_lr_mult``,
            ``FreezeEncoder``): name another submodule by a property ``encoder`` that returns it.
        arch: smp or classic architecture, built with ``encoder_name``, ``encoder_weights`` and
            ``model_kwargs`` when no ``network`` is given.
        encoder_name: smp encoder or timm model as ``tu-<name>``.
        encoder_weights: pretrained weight set of the encoder (e.g. ``imagenet``), a local weights
            file, or None.
        model_kwargs: further arguments of the architecture (``encoder_depth``,
            ``decoder_channels``).
        num_classes: number of classes (the ``seglab`` command takes it from the data module).
        class_names: one name per class, used in metric names (``val/IoU/<name>``).
        in_channels: number of input channels.
        loss: any ``nn.Module`` called as ``loss(logits, mask)`` (``seglab.losses``, smp's, your
            own), or the short forms ``ce`` ... and ``{ce: 1.0, dice: 0.5}`` (``build_loss``).
            Computed in float32 with autocast off; its parts with ``ignore_index: null`` take this
            module's.
        optimizer: any optimizer class (``torch.optim.RAdam``, or from another package), called
            with seglab's parameter groups (``seglab.models.param_groups``).
        lr_scheduler: any scheduler (``torch.optim.lr_scheduler.OneCycleLR`` ...) or seglab's
            warm-up + decay (``seglab.optim.PolyLR``, ``CosineLR``, ``WarmupLR``), or None for a
            constant rate. Schedules that take ``total_steps`` get the run's and step every
            optimizer step; others every epoch (``seglab.optim``).
        lr: learning rate of the decoder, the head and anything outside the encoder; None: the
            optimizer's own (``--model.optimizer.lr``, or its default).
        backbone_lr_mult: the encoder learns at ``lr * backbone_lr_mult``, at every step of any
            schedule.
        weight_decay: weight decay, never applied to biases and norm parameters; None: the
            optimizer's own.
        ignore_index: mask value ignored by the losses and the metrics.
        mean, std: the normalisation of the network's input, ``(image / 255 - mean) / std`` per
            channel (``seglab.data.normalize``). Taken from the data module when training starts if
            not given (a data module with other values is refused), and saved in checkpoints, so
            that a checkpoint alone says how to feed the model (``segment``). The data module's
            ``palette`` is recorded likewise (``hparams.palette``).
        inference: how validation/test/predict compute logits: whole image or sliding window, with
            optional test-time augmentation. Not saved in checkpoints: chosen at evaluation time.

    Parameter groups (``configure_optimizers``): every parameter of the module is optimised, those
    of the encoder at ``lr * backbone_lr_mult`` and all others (decoder, head, and any layer or
    ``nn.Parameter`` a subclass adds) at ``lr``; 0-/1-d tensors (biases, norms) without decay.

    Checkpoints record the injected parts as config (``seglab.models.recorded``), so that
    ``SegmentationModule.load_from_checkpoint(path)`` rebuilds the module alone.
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        arch: Arch = "unet",
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        in_channels: int = 3,
        loss: nn.Module | LossName | dict[LossName, float] = "ce",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = PolyLR,
        lr: float | None = None,
        backbone_lr_mult: float = 0.1,
        weight_decay: float | None = None,
        ignore_index: int = 255,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        inference: Inference | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["inference", *INJECTED])
        self._record_injected(
            network=network, loss=loss, optimizer=optimizer, lr_scheduler=lr_scheduler
        )
        check_settings(self.hparams, optimizer, lr_scheduler)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.network_given = network is not None
        self.model = network or create_model(
            arch, encoder_name, encoder_weights, in_channels, num_classes, **(model_kwargs or {})
        )
        self.size_divisor = output_stride(self.model)
        self.criterion = build_loss(loss)
        bind_ignore_index(self.criterion, ignore_index)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.val_confmat = ConfusionMatrix(num_classes, ignore_index)
        self.test_confmat = ConfusionMatrix(num_classes, ignore_index)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.last_confusion: dict[str, Tensor] = {}  # per prefix, synced over ranks
        # Per stage: mask pixels whose value is neither a class id nor ignore_index, and the
        # largest such value, on the masks' device (see ``labels``). Not a buffer: DDP would
        # overwrite every process's counts with the first one's before each step.
        self.invalid_labels: dict[str, Tensor] = {}
        self.inference = inference or Inference()

    def _record_injected(self, **parts: Any) -> None:
        """Records the injected parts as plain config (``seglab.models.recorded``): the parsed
        config when the seglab command (a LightningCLI) built the module, else descriptions."""
        config = recorded_config()
        recorded = {}
        for key, value in parts.items():
            if config is not None and key in config:
                recorded[key] = config[key]
            elif (described := describe(value, f"model.{key}")) is not UNRECORDED:
                recorded[key] = described
        self.save_hyperparameters({**recorded, INSTANTIATOR_KEY: INSTANTIATOR})

    # --- model -------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, C, H, W)`` of normalised images at the input's size; inputs of any size
        are padded to the encoder's stride and the logits cropped back."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.size_divisor, -w % self.size_divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.model(x)
        return logits[..., :h, :w] if pad_h or pad_w else logits

    @torch.no_grad()
    def segment(self, images: Tensor) -> Tensor:
        """Class ids ``(N, H, W)`` (or ``(H, W)``) of uint8 images ``(N, C, H, W)`` (or
        ``(C, H, W)``) of any size: normalised as the model was trained (``mean``/``std``) and
        predicted with its inference settings. For users of a trained model: it needs nothing but
        the checkpoint."""
        mean, std = self.hparams.mean, self.hparams.std
        if mean is None or std is None:
            raise ConfigError(
                "this model does not record the normalisation of its input (its training data "
                "module had no mean/std): normalise the images yourself and call the model"
            )
        if images.dtype != torch.uint8:
            raise ConfigError(f"segment() takes uint8 images, got {images.dtype}")
        c = len(mean)
        if images.ndim not in (3, 4) or images.shape[-3] != c:
            hint = ""
            if images.ndim == 3 and images.shape[-1] == c:
                hint = " (channels last: pass image.permute(2, 0, 1))"
            elif images.ndim in (3, 4) and images.shape[-3] == 1:
                hint = f" (a grey image: repeat it, image.expand({c}, -1, -1), as training did)"
            raise ConfigError(
                f"segment() takes images ({c}, H, W) or (N, {c}, H, W), got {tuple(images.shape)}"
                f"{hint}"
            )
        single = images.ndim == 3
        x = normalize((images[None] if single else images).to(self.device), mean, std)
        was_training = self.training
        self.eval()
        ids = predict_logits(self, x, self.inference).argmax(1)
        self.train(was_training)
        return ids[0] if single else ids

    def metadata(self) -> dict[str, Any]:
        """What someone who only runs the trained network needs to know (exports carry it)."""
        hp = self.hparams
        own = self.network_given
        return {
            "arch": class_path(type(self.model)) if own else hp.arch,
            "encoder_name": None if own else hp.encoder_name,
            "in_channels": hp.in_channels,
            "channel_order": "RGB",
            "mean": None if hp.mean is None else list(hp.mean),
            "std": None if hp.std is None else list(hp.std),
            "normalisation": "(image / 255 - mean) / std per channel",
            "num_classes": hp.num_classes,
            "class_names": list(self.class_names),
            "palette": None if hp.get("palette") is None else [list(c) for c in hp.palette],
            "ignore_index": hp.ignore_index,
            "output": "logits (N, num_classes, H, W) at the input's size; argmax over dim 1",
        }

    # --- steps ---------------------------------------------------------------------------------
    def labels(self, mask: Tensor, stage: str) -> Tensor:
        """``mask`` with every value that is neither a class id nor ``ignore_index`` ignored and
        counted, without waiting for the device: a wrong id would stop a CUDA run with a
        device-side assert, or be counted nowhere. ``check_labels`` turns the count into an
        error naming the stage, at the next point where the processes meet anyway."""
        hp = self.hparams
        invalid = ((mask < 0) | (mask >= hp.num_classes)) & (mask != hp.ignore_index)
        row = self.invalid_labels.get(stage)
        if row is None or row.device != mask.device:
            with torch.inference_mode(False):  # usable by fit after a validate() too
                row = torch.tensor(NO_INVALID_LABELS, device=mask.device)
            self.invalid_labels[stage] = row
        row[0] += invalid.sum()
        row[1] = torch.maximum(row[1], torch.where(invalid, mask, NO_INVALID_LABELS[1]).max())
        return mask.masked_fill(invalid, hp.ignore_index)

    def check_labels(self, stage: str) -> None:
        """Raises ``DataError`` when any process saw labels ``labels`` had to ignore (all processes
        call this at the same point, so all of them stop)."""
        row = self.invalid_labels.get(stage, torch.tensor(NO_INVALID_LABELS, device=self.device))
        count = self.trainer.strategy.reduce(row[0].double(), reduce_op="sum")
        largest = self.trainer.strategy.reduce(row[1].double(), reduce_op="max")
        row.copy_(torch.tensor(NO_INVALID_LABELS))
        if count > 0:
            largest = int(largest)
            hp = self.hparams
            raise DataError(
                f"{int(count)} pixels of the {stage} masks are neither class ids "
                f"0..{hp.num_classes - 1} nor ignore_index {hp.ignore_index} (largest: {largest}): "
                "fix the masks, or set model.num_classes / model.ignore_index to what they use "
                "(seglab check-data names the files of seglab's data modules)"
            )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        image, mask, _ = unpack_batch(batch)
        mask = self.labels(mask, "train")
        if self.global_step % LABEL_CHECK_EVERY == 0:  # one wait for the device every 50 steps
            self.check_labels("train")
        loss = self.loss(self(image), mask)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=image.shape[0])
        return loss

    def _eval_step(
        self, batch: Any, stage: str, loaders: Any, batch_idx: int, dataloader_idx: int
    ) -> None:
        confmat, mean_loss = self._eval_metrics(stage)
        image, mask, _ = unpack_batch(batch)
        loader = loaders[dataloader_idx] if isinstance(loaders, Sequence) else loaders
        real = real_samples(loader, batch_idx, len(image))  # not the padding of a DDP sampler
        if real == 0:
            return
        image, mask = image[:real], self.labels(mask[:real], stage)
        logits = predict_logits(self, image, self.inference)
        mask = mask.to(logits.device)  # logits stay on the host when the device had no room
        # The mean of per-image losses: a batch's loss (Dice, or CE over its labelled pixels)
        # depends on which images share the batch, which would tie val/loss to batch size and
        # process count.
        per_image = [self.loss(lg[None], m[None]) for lg, m in zip(logits, mask, strict=True)]
        mean_loss.update(torch.stack(per_image).to(self.device))
        confmat.update(logits.argmax(1).to(self.device), mask.to(self.device))

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        loaders = self.trainer.val_dataloaders
        self._eval_step(batch, "val", loaders, batch_idx, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        loaders = self.trainer.test_dataloaders
        self._eval_step(batch, "test", loaders, batch_idx, dataloader_idx)

    def _eval_metrics(self, stage: str) -> tuple[ConfusionMatrix, MeanMetric]:
        return (
            (self.val_confmat, self.val_loss)
            if stage == "val"
            else (self.test_confmat, self.test_loss)
        )

    def _log_epoch(self, prefix: str) -> None:
        confmat, mean_loss = self._eval_metrics(prefix)
        self.check_labels(prefix)
        # compute() sums the states of all ranks; every rank then logs the same numbers.
        confusion = confmat.compute()
        # Kept for callbacks (per-class table, confusion-matrix plot): they run before this hook.
        self.last_confusion[prefix] = confusion.detach().cpu()
        metrics = metric_dict(confusion, prefix, self.class_names)
        metrics[f"{prefix}/loss"] = mean_loss.compute()
        metrics[f"{prefix}/tta_passes"] = float(self.inference.passes)
        self.log(f"{prefix}/mIoU", metrics.pop(f"{prefix}/mIoU"), prog_bar=True)
        self.log_dict(metrics)
        # Reset outside inference mode: states re-created as inference tensors would refuse the
        # in-place updates of the next validation run inside fit (which runs under no_grad).
        with torch.inference_mode(False):
            confmat.reset()
            mean_loss.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Class ids ``(N, H, W)``; with ``inference.output: probabilities`` a dict of ``mask``
        and ``probs`` (softmax, ``(N, C, H, W)``)."""
        image, _, _ = unpack_batch(batch)
        logits = predict_logits(self, image, self.inference)
        if self.inference.output == "probabilities":
            probs = logits.float().softmax(1)
            return {"mask": probs.argmax(1), "probs": probs}
        return logits.argmax(1)

    def loss(self, logits: Tensor, mask: Tensor) -> Tensor:
        """The loss, in float32 with autocast off: region losses sum over every pixel of a batch,
        which overflows in half precision (cross-entropy runs in float32 under autocast anyway)."""
        if logits.shape[1] != self.hparams.num_classes:
            raise ConfigError(
                f"model.network returns {logits.shape[1]} channels but num_classes is "
                f"{self.hparams.num_classes}: the network must return (N, num_classes, H, W) logits"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.criterion(logits.float(), mask)

    # --- what the data says --------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is not None:
            self.adopt_data_settings(datamodule)

    def configure_callbacks(self) -> list[L.Callback]:
        """Class weights given as a rule are computed from the training masks by the data side."""
        return [ClassWeightsFromData()] if needing_class_counts(self.criterion) else []

    def adopt_data_settings(self, data: object) -> None:
        """Records the data's normalisation and palette (when the model has none yet) and refuses
        data whose classes or normalisation differ from the model's: a checkpoint trained on one
        normalisation and evaluated on another would predict silently wrong."""
        classes = getattr(data, "num_classes", None)
        if classes is not None and classes != self.hparams.num_classes:
            raise ConfigError(
                f"the data module {type(data).__name__} has {classes} classes but the model "
                f"{self.hparams.num_classes} (model.num_classes)"
            )
        for key in DATA_SETTINGS:
            value = getattr(data, key, None)
            if value is None:
                continue
            value = [tuple(c) for c in value] if key == "palette" else tuple(value)
            mine = self.hparams.get(key)
            if mine is None:
                self.hparams[key] = value
            elif key != "palette" and not _same(mine, value):
                raise ConfigError(
                    f"data.{key} {list(value)} differs from the {list(mine)} the model was trained "
                    f"with (model.{key}); leave data.{key} unset to use the model's"
                )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of another model is refused with the option that differs, not with
        load_state_dict's list of size mismatches; the data's palette it recorded is taken back."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("arch", "encoder_name", "num_classes", "in_channels"):
            if key in saved and saved[key] != self.hparams[key]:
                raise ConfigError(
                    f"--ckpt_path: the checkpoint was trained with model.{key}={saved[key]!r}, "
                    f"but this run has model.{key}={self.hparams[key]!r}"
                )
        if saved.get("palette") is not None:
            self.hparams["palette"] = [tuple(c) for c in saved["palette"]]
        # Checkpoints written before unused encoder stages were dropped (factory.drop_unused_stages)
        # still hold those stages' weights, which no layer takes any more.
        state = checkpoint.get("state_dict")
        dropped = tuple(
            f"model.{name}." for name, m in self.model.named_modules() if isinstance(m, nn.Identity)
        )
        if isinstance(state, dict) and dropped:
            for key in [k for k in state if k.startswith(dropped)]:
                del state[key]

    # --- optimization --------------------------------------------------------------------------
    def backbone(self) -> nn.Module | None:
        """The network's ``encoder`` (smp's name for the backbone), or None."""
        encoder = getattr(self.model, "encoder", None)
        return encoder if isinstance(encoder, nn.Module) else None

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        backbone = self.backbone()
        if backbone is None and hp.backbone_lr_mult != 1:
            raise ConfigError(
                f"model.backbone_lr_mult {hp.backbone_lr_mult}: the network "
                f"{type(self.model).__name__} has no encoder submodule to apply it to; give it an "
                "`encoder` attribute (a property returning its backbone), or set it to 1.0"
            )
        lr = resolve(hp.lr, self.optimizer, "lr")
        weight_decay = resolve(hp.weight_decay, self.optimizer, "weight_decay")
        groups = param_groups(self, backbone, hp.backbone_lr_mult, lr, weight_decay)
        optimizer = self.optimizer(groups)
        if self.lr_scheduler is None:
            apply_lr_mults(optimizer)
            return optimizer
        total = self.trainer.estimated_stepping_batches
        scheduler = build_scheduler(self.lr_scheduler, optimizer, total)
        apply_lr_mults(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """The schedule sees the groups' own rates; the encoder's multiplier is applied after."""
        with scheduled_lrs(scheduler.optimizer):
            super().lr_scheduler_step(scheduler, metric)


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b, strict=True))


def check_settings(hp: Any, optimizer: Any, lr_scheduler: Any) -> None:
    """Refuses settings that cannot train, naming the option, before anything is built."""
    for key, value in (("optimizer", optimizer), ("lr_scheduler", lr_scheduler)):
        if isinstance(value, str):  # a name, as seglab 0.1 took: the class is what is injected
            raise ConfigError(
                f"model.{key}: give a class, not the name {value!r} (e.g. torch.optim.AdamW, "
                "seglab.optim.PolyLR)"
            )
    n = hp["num_classes"]
    if n is None:
        raise ConfigError(
            "model.num_classes is not set: give it, or train with a data module that has "
            "num_classes (the seglab command takes it from the data)"
        )
    if n < 1:
        raise ConfigError(f"model.num_classes must be at least 1, got {n}")
    if hp["class_names"] is not None and len(hp["class_names"]) != n:
        raise ConfigError(
            f"model.class_names has {len(hp['class_names'])} entries but num_classes is {n}"
        )
    if hp["lr"] is not None and not hp["lr"] > 0:
        raise ConfigError(f"model.lr must be positive, got {hp['lr']}")
    for key in ("backbone_lr_mult", "weight_decay"):
        if hp[key] is not None and hp[key] < 0:
            raise ConfigError(f"model.{key} must not be negative, got {hp[key]}")
    if hp["in_channels"] < 1:
        raise ConfigError(f"model.in_channels must be at least 1, got {hp['in_channels']}")
    for key in ("mean", "std"):
        if hp[key] is not None and len(hp[key]) != hp["in_channels"]:
            raise ConfigError(
                f"model.{key} has {len(hp[key])} values but in_channels is {hp['in_channels']}"
            )
    if hp["mean"] is not None and hp["std"] is not None:
        check_normalization(hp["mean"], hp["std"], owner="model")
