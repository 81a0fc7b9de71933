"""``SegmentationModule``: the model, its loss, its metrics and its optimizer, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from seglab.compat import ddp_finds_unused_parameters
from seglab.errors import CheckpointError, ConfigError
from seglab.inference import Inference, predict_logits
from seglab.losses import CombinedLoss, LossName
from seglab.metrics import ConfusionMatrix, metric_dict
from seglab.models.factory import Arch, create_model, output_stride
from seglab.models.param_groups import param_groups
from seglab.optim import ScheduleName, lr_factor


class SegmentationModule(L.LightningModule):
    """Semantic segmentation with any smp architecture and smp/timm encoder.

    Args:
        arch: network architecture.
        encoder_name: smp encoder or timm model as ``tu-<name>``.
        encoder_weights: pretrained weight set of the encoder (e.g. ``imagenet``), or None.
        num_classes: number of classes (linked from the data module by the CLI).
        class_names: one name per class, used in metric names (``val/IoU/<name>``).
        in_channels: number of input channels.
        loss: a loss name or a weighted sum such as ``{ce: 1.0, dice: 0.5}``.
        class_weights: per-class weights of the cross-entropy loss.
        label_smoothing: label smoothing of the cross-entropy loss.
        ignore_index: mask value ignored by the losses and the metrics.
        optimizer: optimizer for all parameter groups.
        lr: learning rate of the decoder and head.
        backbone_lr_mult: the encoder learns at ``lr * backbone_lr_mult``.
        weight_decay: weight decay, not applied to biases and norm parameters.
        momentum: momentum of SGD (beta1 for Adam/AdamW is left at its default).
        scheduler: learning-rate decay, stepped every optimizer step.
        warmup_steps: optimizer steps of linear warm-up before the decay.
        poly_power: exponent of the poly schedule.
        min_lr_ratio: the schedule decays to ``lr * min_lr_ratio``.
        freeze_encoder_epochs: keep the encoder frozen (weights and norm statistics) for this many
            epochs, then fine-tune it.
        model_kwargs: further arguments of the architecture (``encoder_depth``, ``decoder_channels``).
        nonfinite_loss: on a NaN/inf training loss, ``stop`` the run (naming the step and the batch's
            files; the last good checkpoint stays) or ``skip`` the batch and count it in
            ``train/skipped_batches``. ``stop`` checks without waiting for the device (the step's
            flag is read when ready, at the latest before validation or a checkpoint, so the run
            may go on up to a few steps); ``skip`` must know before backward: one host sync a step.
        channels_last: keep the network and its input batches in channels-last memory format
            (faster convolutions on tensor cores, typically with ``bf16-mixed``).
        compile: ``torch.compile`` the network when fit/validate/test start; a dict passes its
            arguments (e.g. ``{mode: max-autotune}`` or ``{backend: aot_eager}``). Checkpoint keys
            are the same either way. ``channels_last`` and ``compile`` are run-time choices, not
            saved in checkpoints.
        inference: how validation/test/predict compute logits: whole image or sliding window, with
            optional test-time augmentation. Not saved in checkpoints: chosen at evaluation time.
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
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        ignore_index: int = 255,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        lr: float = 1e-3,
        backbone_lr_mult: float = 0.1,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: ScheduleName = "poly",
        warmup_steps: int = 0,
        poly_power: float = 0.9,
        min_lr_ratio: float = 0.0,
        freeze_encoder_epochs: int = 0,
        model_kwargs: dict[str, Any] | None = None,
        nonfinite_loss: Literal["stop", "skip"] = "stop",
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        inference: Inference | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["inference", "channels_last", "compile"])
        check_settings(self.hparams)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.model = create_model(
            arch, encoder_name, encoder_weights, in_channels, num_classes, **(model_kwargs or {})
        )
        self.size_divisor = output_stride(self.model)
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)  # Trainer's .to(device) keeps it
        self.compile_kwargs = ({} if compile is True else dict(compile)) if compile else None
        self._finite_flags: list[tuple] = []  # (host flag, ready event, loss, step, epoch, names)
        weights = {loss: 1.0} if isinstance(loss, str) else dict(loss)
        self.criterion = CombinedLoss(weights, ignore_index, class_weights, label_smoothing)
        self.val_confmat = ConfusionMatrix(num_classes, ignore_index)
        self.test_confmat = ConfusionMatrix(num_classes, ignore_index)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.last_confusion: dict[str, Tensor] = {}  # per prefix, synced over ranks
        self.encoder_frozen = False
        self.skipped_batches = 0
        self.inference = inference or Inference()
        self.predict_probabilities = False  # set by PredictionWriter when it saves probabilities

    # --- model -------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, C, H, W)`` at the input's size; inputs of any size are padded to the
        encoder's stride and the logits cropped back."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.size_divisor, -w % self.size_divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.model(x)
        return logits[..., :h, :w] if pad_h or pad_w else logits

    @staticmethod
    def unpack_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
        """``(image, mask)`` from a dict with ``image``/``mask`` keys or an ``(image, mask)`` tuple;
        masks may be ``(N, H, W)`` or ``(N, 1, H, W)`` of any integer type."""
        if isinstance(batch, Mapping):
            image, mask = batch["image"], batch.get("mask")
        elif isinstance(batch, Sequence) and not isinstance(batch, str):
            image, mask = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            image, mask = batch, None
        if mask is not None:
            if mask.ndim == 4 and mask.shape[1] == 1:
                mask = mask[:, 0]
            mask = mask.long()
        return image, mask

    # --- steps ---------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        image, mask = self.unpack_batch(batch)
        loss = self.criterion(self(image), mask)
        names = batch.get("name") if isinstance(batch, Mapping) else None
        if self.hparams.nonfinite_loss == "skip":
            if not torch.isfinite(loss):  # needed before backward: one host sync per step
                return self._nonfinite(loss, names, self.global_step, self.current_epoch)
        else:
            self._check_finite(wait=False)
            self._finite_flags.append(self._finite_flag(loss, names))
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=image.shape[0])
        return loss

    def _finite_flag(self, loss: Tensor, names: Any) -> tuple:
        """Whether ``loss`` is finite, copied to the host without waiting for the device: the
        copy is queued behind the step and an event tells when it has landed."""
        loss = loss.detach()
        flag, event = torch.isfinite(loss), None
        if flag.device.type == "cuda":
            host = torch.empty((), dtype=torch.bool, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            flag, event = host, torch.cuda.Event()
            event.record()
        return flag, event, loss, self.global_step, self.current_epoch, names

    def _check_finite(self, wait: bool) -> None:
        """Raises (``nonfinite_loss: stop``) on the first recorded non-finite loss whose flag has
        reached the host; ``wait`` waits for all of them."""
        while self._finite_flags:
            flag, event, loss, step, epoch, names = self._finite_flags[0]
            if event is not None and not wait and not event.query():
                return
            if event is not None:
                event.synchronize()
            self._finite_flags.pop(0)
            if not flag:
                self._finite_flags.clear()
                self._nonfinite(loss, names, step, epoch)

    def on_validation_epoch_start(self) -> None:
        self._check_finite(wait=True)  # no validation or checkpoint of a diverged model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_finite(wait=True)  # raised before the file is written: the last good one stays

    def on_train_end(self) -> None:
        self._check_finite(wait=True)

    def _nonfinite(self, loss: Tensor, names: Any, step: int, epoch: int) -> None:
        where = f"at step {step} (epoch {epoch})"
        files = f"; batch files: {', '.join(map(str, names))}" if names else ""
        if self.hparams.nonfinite_loss == "stop":
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) {where}{files}. The last checkpoint is "
                "kept; set model.nonfinite_loss: skip to skip such batches instead."
            )
        self.skipped_batches += 1
        self.log("train/skipped_batches", float(self.skipped_batches))
        rank_zero_warn(f"skipped a batch with non-finite loss {where}{files}")
        return None  # Lightning skips backward and the optimizer step

    def _eval_step(self, batch: Any, confmat: ConfusionMatrix, mean_loss: MeanMetric) -> None:
        image, mask = self.unpack_batch(batch)
        logits = predict_logits(self, image, self.inference)
        # The mean of per-image losses: a batch's loss (Dice, or CE over its labelled pixels) depends
        # on which images share the batch, which would tie val/loss to batch size and process count.
        per_image = [self.criterion(lg[None], m[None]) for lg, m in zip(logits, mask, strict=True)]
        mean_loss.update(torch.stack(per_image))
        confmat.update(logits.argmax(1), mask)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, self.val_confmat, self.val_loss)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, self.test_confmat, self.test_loss)

    def _log_epoch(self, prefix: str, confmat: ConfusionMatrix, mean_loss: MeanMetric) -> None:
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
        self._log_epoch("val", self.val_confmat, self.val_loss)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_confmat, self.test_loss)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Class ids ``(N, H, W)``; with ``predict_probabilities`` a dict of ``mask`` and ``probs``."""
        image, _ = self.unpack_batch(batch)
        logits = predict_logits(self, image, self.inference)
        if self.predict_probabilities:
            probs = logits.float().softmax(1)
            return {"mask": probs.argmax(1), "probs": probs}
        return logits.argmax(1)

    # --- encoder freezing ----------------------------------------------------------------------
    def set_encoder_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the encoder's weights; frozen norm layers stay in eval mode so their
        running statistics do not move."""
        self.encoder_frozen = frozen
        for param in self.model.encoder.parameters():
            param.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> SegmentationModule:
        super().train(mode)
        if mode and self.encoder_frozen:
            for module in self.model.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._NormBase):
                    module.eval()
        return self

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of another model is refused with the option that differs, not with
        load_state_dict's list of size mismatches."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("arch", "encoder_name", "num_classes", "in_channels"):
            if key in saved and saved[key] != self.hparams[key]:
                raise CheckpointError(
                    f"--ckpt_path: the checkpoint was trained with model.{key}={saved[key]!r}, "
                    f"but this run has model.{key}={self.hparams[key]!r}"
                )

    def setup(self, stage: str) -> None:
        # Module.compile compiles in place: parameter names (checkpoint keys) do not change, as
        # they would under `self.model = torch.compile(self.model)` (an `_orig_mod.` prefix).
        # Not for predict, where images of any size would mean recompiles.
        compiled = getattr(self.model, "_compiled_call_impl", None) is not None
        if (
            self.compile_kwargs is not None
            and stage in ("fit", "validate", "test")
            and not compiled
        ):
            self.model.compile(**self.compile_kwargs)

    def on_fit_start(self) -> None:
        strategy = self.trainer.strategy
        if self.hparams.freeze_encoder_epochs > 0 and not ddp_finds_unused_parameters(strategy):
            raise ConfigError(
                "model.freeze_encoder_epochs > 0 under DDP needs "
                "trainer.strategy: ddp_find_unused_parameters_true (frozen weights get no gradient)"
            )

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.hparams.freeze_encoder_epochs
        if frozen != self.encoder_frozen:
            self.set_encoder_frozen(frozen)

    # --- optimization --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        groups = param_groups(self.model, hp.lr, hp.backbone_lr_mult, hp.weight_decay)
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)
        elif hp.optimizer == "adam":
            optimizer = torch.optim.Adam(groups, lr=hp.lr)
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp.lr)
        total = int(self.trainer.estimated_stepping_batches)
        factor = lr_factor(hp.scheduler, total, hp.warmup_steps, hp.poly_power, hp.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def check_settings(hp: Mapping[str, Any]) -> None:
    """Refuses settings that cannot train, naming the option, before anything is built."""
    n = hp["num_classes"]
    if n is None:
        raise ConfigError(
            "model.num_classes is not set: give it, or train with a data module that has "
            "num_classes (the seglab command takes it from the data)"
        )
    if n < 1:
        raise ConfigError(f"model.num_classes must be at least 1, got {n}")
    for key in ("class_names", "class_weights"):
        if hp[key] is not None and len(hp[key]) != n:
            raise ConfigError(f"model.{key} has {len(hp[key])} entries but num_classes is {n}")
    if hp["class_weights"] is not None and min(hp["class_weights"]) < 0:
        raise ConfigError(f"model.class_weights must not be negative, got {hp['class_weights']}")
    positive = ("lr", "poly_power")
    non_negative = ("backbone_lr_mult", "weight_decay", "warmup_steps", "freeze_encoder_epochs")
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
