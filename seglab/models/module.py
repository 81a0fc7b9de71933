"""``SegmentationModule``: the network, its loss, its metrics and its optimizer, and nothing else.

Run-time policies are callbacks any module can use (``seglab.callbacks``: ``NonFiniteLoss``,
``FreezeEncoder``, ``ChannelsLast``, ``Compile``); the ``seglab`` command adds a ``NonFiniteLoss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import MeanMetric

from seglab.data.batch import unpack_batch
from seglab.data.stats import class_pixel_counts
from seglab.errors import ConfigError, DataError
from seglab.inference import Inference, predict_logits
from seglab.losses import CombinedLoss, LossName, WeightRule, class_weights_from_counts
from seglab.metrics import ConfusionMatrix, metric_dict
from seglab.models.evaluation import real_samples
from seglab.models.factory import Arch, create_model, output_stride
from seglab.models.param_groups import param_groups
from seglab.optim import OptimizerName, ScheduleName, build_optimizer, lr_factor

# What a trained model records so that its checkpoint alone says how to feed it and show its output.
DATA_SETTINGS = ("mean", "std", "palette")


LABEL_CHECK_EVERY = 50  # training steps between two checks of the masks' values (see labels)
NO_INVALID_LABELS = (0, torch.iinfo(torch.long).min)  # (count, largest value) before any is seen


class SegmentationModule(L.LightningModule):
    """Semantic segmentation with any smp architecture and smp/timm encoder, or a classic one.

    Args:
        arch: network architecture.
        encoder_name: smp encoder or timm model as ``tu-<name>``.
        encoder_weights: pretrained weight set of the encoder (e.g. ``imagenet``), a local weights
            file, or None.
        num_classes: number of classes (the ``seglab`` command takes it from the data module).
        class_names: one name per class, used in metric names (``val/IoU/<name>``).
        in_channels: number of input channels.
        loss: a loss name or a weighted sum such as ``{ce: 1.0, dice: 0.5}``; ``ohem`` is the
            cross-entropy over the hard pixels only (``ohem_threshold``, ``ohem_min_kept``).
        class_weights: per-class weights of the cross-entropy losses: a list, or a rule computed
            once from the training split's masks when fit starts (ignored pixels left out) and
            recorded as that list: ``median_frequency`` (SegNet's CamVid recipe) or
            ``inverse_frequency`` (capped at ``class_weight_cap``). See
            ``seglab.losses.class_weights_from_counts``.
        class_weight_cap: the largest weight ``inverse_frequency`` gives.
        label_smoothing: label smoothing of the cross-entropy loss.
        ignore_index: mask value ignored by the losses and the metrics.
        optimizer: optimizer for all parameter groups.
        lr: learning rate of the decoder, the head and anything outside the encoder.
        backbone_lr_mult: the encoder (``model.encoder``) learns at ``lr * backbone_lr_mult``.
        weight_decay: weight decay, not applied to biases and norm parameters.
        momentum: momentum of SGD (beta1 for Adam/AdamW is left at its default).
        scheduler: learning-rate decay, stepped every optimizer step.
        warmup_steps: optimizer steps of linear warm-up before the decay.
        warmup_ratio: the warm-up as a share of the run's optimizer steps instead (``0.03``: the
            first 3%), so a recipe shortened with ``max_steps`` keeps its proportions.
        poly_power: exponent of the poly schedule.
        min_lr_ratio: the schedule decays to ``lr * min_lr_ratio``.
        model_kwargs: further arguments of the architecture (``encoder_depth``, ``decoder_channels``).
        mean, std: the normalisation of the network's input, ``(image / 255 - mean) / std`` per
            channel of an RGB uint8 image. Taken from the data module when training starts if not
            given (a data module with other values is refused), and saved in checkpoints, so that a
            checkpoint alone says how to feed the model (``segment``).
        palette: an RGB colour per class for pictures of predictions; taken from the data module
            like ``mean`` when it has one.
        inference: how validation/test/predict compute logits: whole image or sliding window, with
            optional test-time augmentation. Not saved in checkpoints: chosen at evaluation time.

    Parameter groups (``configure_optimizers``): every parameter of the module is optimised, those
    under ``model.encoder`` at ``lr * backbone_lr_mult`` and all others (decoder, head, and any layer
    or ``nn.Parameter`` a subclass adds) at ``lr``; 0-/1-d tensors (biases, norms) without decay.
    """

    def __init__(
        self,
        arch: Arch = "unet",
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        in_channels: int = 3,
        loss: LossName | dict[LossName, float] = "ce",
        class_weights: list[float] | WeightRule | None = None,
        class_weight_cap: float = 10.0,
        ohem_threshold: float = 0.7,
        ohem_min_kept: int = 100_000,
        label_smoothing: float = 0.0,
        ignore_index: int = 255,
        optimizer: OptimizerName = "adamw",
        lr: float = 1e-3,
        backbone_lr_mult: float = 0.1,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: ScheduleName = "poly",
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        poly_power: float = 0.9,
        min_lr_ratio: float = 0.0,
        model_kwargs: dict[str, Any] | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        palette: list[tuple[int, int, int]] | None = None,
        inference: Inference | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["inference"])
        check_settings(self.hparams)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.model = create_model(
            arch, encoder_name, encoder_weights, in_channels, num_classes, **(model_kwargs or {})
        )
        self.size_divisor = output_stride(self.model)
        self.criterion = self.build_criterion()
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
        """Class ids ``(N, H, W)`` (or ``(H, W)``) of uint8 RGB images ``(N, 3, H, W)`` (or
        ``(3, H, W)``) of any size: normalised as the model was trained (``mean``/``std``) and
        predicted with its inference settings. For users of a trained model: it needs nothing but
        the checkpoint."""
        mean, std = self.hparams.mean, self.hparams.std
        if mean is None or std is None:
            raise ConfigError(
                "this model does not record the normalisation of its input (its training data "
                "module had no mean/std): normalise the images yourself and call the model"
            )
        if images.dtype != torch.uint8:
            raise ConfigError(f"segment() takes uint8 RGB images, got {images.dtype}")
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
        x = (images[None] if single else images).to(self.device, torch.float32) / 255
        shape = (1, -1, 1, 1)
        x = (x - x.new_tensor(mean).view(shape)) / x.new_tensor(std).view(shape)
        was_training = self.training
        self.eval()
        ids = predict_logits(self, x, self.inference).argmax(1)
        self.train(was_training)
        return ids[0] if single else ids

    def metadata(self) -> dict[str, Any]:
        """What someone who only runs the trained network needs to know (exports carry it)."""
        hp = self.hparams
        return {
            "arch": hp.arch,
            "encoder_name": hp.encoder_name,
            "in_channels": hp.in_channels,
            "channel_order": "RGB",
            "mean": None if hp.mean is None else list(hp.mean),
            "std": None if hp.std is None else list(hp.std),
            "normalisation": "(image / 255 - mean) / std per channel",
            "num_classes": hp.num_classes,
            "class_names": list(self.class_names),
            "palette": None if hp.palette is None else [list(c) for c in hp.palette],
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
        loss = self.criterion(self(image), mask)
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
        # The mean of per-image losses: a batch's loss (Dice, or CE over its labelled pixels) depends
        # on which images share the batch, which would tie val/loss to batch size and process count.
        per_image = [self.criterion(lg[None], m[None]) for lg, m in zip(logits, mask, strict=True)]
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

    def build_criterion(self) -> CombinedLoss:
        """The loss of the current settings (class weights given as a rule count as none until
        they are computed from the data)."""
        hp = self.hparams
        weights = {hp.loss: 1.0} if isinstance(hp.loss, str) else dict(hp.loss)
        class_weights = None if isinstance(hp.class_weights, str) else hp.class_weights
        ohem = (hp.ohem_threshold, hp.ohem_min_kept)
        return CombinedLoss(weights, hp.ignore_index, class_weights, hp.label_smoothing, ohem)

    # --- what the data says --------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is not None:
            self.adopt_data_settings(datamodule)
        if stage == "fit" and isinstance(self.hparams.class_weights, str):
            self.compute_class_weights(datamodule)

    def compute_class_weights(self, datamodule: object) -> None:
        """Turns a ``class_weights`` rule into numbers from the training masks (on one process,
        sent to the others), records them in the hyper-parameters (so checkpoints and resumed runs
        use these very numbers) and logs them."""
        rule = self.hparams.class_weights
        train = getattr(datamodule, "train_dataset", None)
        if train is None:
            raise ConfigError(
                f"model.class_weights: {rule} counts the training masks of a seglab data module; "
                f"{type(datamodule).__name__} is not one: give the weights as a list"
            )
        weights = None
        if self.trainer.is_global_zero:
            counts = class_pixel_counts(train())
            weights = class_weights_from_counts(counts, rule, self.hparams.class_weight_cap)
        weights = self.trainer.strategy.broadcast(weights, src=0)
        self.hparams.class_weights = weights
        self.criterion = self.build_criterion()
        table = {f"class_weight/{n}": w for n, w in zip(self.class_names, weights, strict=True)}
        for logger in self.trainer.loggers:
            logger.log_hyperparams(table)
        shown = ", ".join(f"{n} {w:.3g}" for n, w in zip(self.class_names, weights, strict=True))
        rank_zero_info(f"model.class_weights ({rule}): {shown}")

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
            mine = self.hparams[key]
            if mine is None:
                self.hparams[key] = value
            elif key != "palette" and not _same(mine, value):
                raise ConfigError(
                    f"data.{key} {list(value)} differs from the {list(mine)} the model was trained "
                    f"with (model.{key}); leave data.{key} unset to use the model's"
                )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of another model is refused with the option that differs, not with
        load_state_dict's list of size mismatches."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("arch", "encoder_name", "num_classes", "in_channels"):
            if key in saved and saved[key] != self.hparams[key]:
                raise ConfigError(
                    f"--ckpt_path: the checkpoint was trained with model.{key}={saved[key]!r}, "
                    f"but this run has model.{key}={self.hparams[key]!r}"
                )

    # --- optimization --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        groups = param_groups(self, hp.lr, hp.backbone_lr_mult, hp.weight_decay)
        optimizer = build_optimizer(hp.optimizer, groups, hp.lr, hp.momentum)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = hp.warmup_steps if hp.warmup_ratio is None else round(hp.warmup_ratio * total)
        factor = lr_factor(hp.scheduler, total, warmup, hp.poly_power, hp.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b, strict=True))


def check_settings(hp: Any) -> None:
    """Refuses settings that cannot train, naming the option, before anything is built."""
    n = hp["num_classes"]
    if n is None:
        raise ConfigError(
            "model.num_classes is not set: give it, or train with a data module that has "
            "num_classes (the seglab command takes it from the data)"
        )
    if n < 1:
        raise ConfigError(f"model.num_classes must be at least 1, got {n}")
    weights = hp["class_weights"]
    if isinstance(weights, str) and weights not in WeightRule.__args__:
        raise ConfigError(
            f"model.class_weights: unknown rule {weights!r}; give a list of numbers or one of "
            f"{', '.join(WeightRule.__args__)}"
        )
    for key in ("class_names", "class_weights", "palette"):
        if hp[key] is not None and not isinstance(hp[key], str) and len(hp[key]) != n:
            raise ConfigError(f"model.{key} has {len(hp[key])} entries but num_classes is {n}")
    if isinstance(weights, list) and min(weights) < 0:
        raise ConfigError(f"model.class_weights must not be negative, got {weights}")
    if hp["warmup_ratio"] is not None:
        if hp["warmup_steps"]:
            raise ConfigError("model.warmup_steps and model.warmup_ratio: give one, not both")
        if not 0 <= hp["warmup_ratio"] < 1:
            raise ConfigError(f"model.warmup_ratio must be in [0, 1), got {hp['warmup_ratio']}")
    positive = ("lr", "poly_power", "class_weight_cap")
    non_negative = ("backbone_lr_mult", "weight_decay", "warmup_steps")
    fractions = {"momentum": (0, 1), "label_smoothing": (0, 1), "min_lr_ratio": (0, 1)}
    for key in positive:
        if not hp[key] > 0:
            raise ConfigError(f"model.{key} must be positive, got {hp[key]}")
    for key in non_negative:
        if hp[key] < 0:
            raise ConfigError(f"model.{key} must not be negative, got {hp[key]}")
    for key, (low, high) in fractions.items():
        if not low <= hp[key] <= high:
            raise ConfigError(f"model.{key} must be in [{low}, {high}], got {hp[key]}")
    if hp["in_channels"] < 1:
        raise ConfigError(f"model.in_channels must be at least 1, got {hp['in_channels']}")
    for key in ("mean", "std"):
        if hp[key] is not None and len(hp[key]) != hp["in_channels"]:
            raise ConfigError(
                f"model.{key} has {len(hp[key])} values but in_channels is {hp['in_channels']}"
            )
    if hp["std"] is not None and min(hp["std"]) <= 0:
        raise ConfigError(f"model.std must be positive, got {list(hp['std'])}")
