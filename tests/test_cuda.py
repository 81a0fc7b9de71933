"""The CUDA paths a CPU cannot exercise: region losses under half-precision autocast, channels-last
and ``torch.compile`` through the seglab command, the non-finite check without a per-step host
sync, and the sliding window's host fallback under a real memory cap (its fallback on a simulated
out-of-memory runs on CUDA too: tests/inference/test_sliding_window.py).

Marked ``cuda``: skipped without a CUDA device (tests/conftest.py); ``bench/gpu_check.sh`` runs
them whenever a GPU is lent. Written against public behaviour only (the command, the Python API,
``seglab.inference``): the module's internals are being reorganised.
"""

from __future__ import annotations

import math
import warnings

import lightning as L
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader, TensorDataset

from seglab import DataError, SegmentationModule
from seglab.callbacks import NonFiniteLoss
from seglab.cli import main
from seglab.inference import sliding_window
from seglab.losses import build_loss
from tests.conftest import TINY

pytestmark = pytest.mark.cuda

# fmt: off
GPU_FIT = [
    "fit", *TINY,
    "--trainer.accelerator", "gpu",
    "--trainer.precision", "bf16-mixed",
    "--trainer.max_steps", "2",
]
# fmt: on


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "lovasz", "focal"])
def test_region_losses_run_in_float32_under_autocast(name, dtype):
    """Autocast makes the logits half precision; the loss over 2 M pixels (whose sums overflow
    float16) is float32 all the same and equals the float32 loss of the same logits."""
    torch.manual_seed(0)
    head = nn.Conv2d(3, 4, 1).cuda()
    images = torch.randn(8, 3, 512, 512, device="cuda")
    masks = torch.randint(0, 4, (8, 512, 512), device="cuda")
    masks[:, :16] = 255  # ignored rows
    loss = build_loss(name)
    with torch.autocast("cuda", dtype=dtype):
        logits = head(images)
        value = loss(logits, masks)
    assert logits.dtype == dtype
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(value, loss(logits.detach().float(), masks))
    value.backward()
    assert torch.isfinite(head.weight.grad).all()


def test_channels_last_fit_keeps_nhwc_weights_and_a_finite_loss():
    cli = main([*GPU_FIT, "--trainer.callbacks+=seglab.callbacks.ChannelsLast"])
    weights = [p for p in cli.model.parameters() if p.ndim == 4 and p.shape[-2:] != (1, 1)]
    assert weights and all(w.is_cuda for w in weights)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)  # really NHWC, not contiguous by chance
    assert cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_compiled_fit_saves_the_checkpoint_keys_of_an_uncompiled_one(tmp_path):
    def last_checkpoint(name: str, *options: str) -> str:
        cli = main([*GPU_FIT, "--trainer.default_root_dir", str(tmp_path / name), *options])
        assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
        return cli.trainer.checkpoint_callback.last_model_path

    plain = last_checkpoint("plain")
    graphs = counters["stats"]["unique_graphs"]
    compiled = last_checkpoint(
        "compiled", "--trainer.callbacks+=seglab.callbacks.Compile"
    )  # inductor
    assert counters["stats"]["unique_graphs"] > graphs, "nothing went through torch.compile"

    def keys(path: str) -> list[str]:
        return list(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])

    assert keys(compiled) == keys(plain)  # no `_orig_mod.` prefixes
    SegmentationModule.load_from_checkpoint(compiled)  # strict: every key fits an uncompiled model


class SyncCounter(L.Callback):
    """Host-device synchronisations inside each training step, as torch's sync debug mode reports
    them (a warning for every synchronising call: ``.item()``, ``bool(tensor)``, blocking
    copies)."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self._recorder: warnings.catch_warnings | None = None
        self._seen: list[warnings.WarningMessage] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._recorder = warnings.catch_warnings(record=True)
        self._seen = self._recorder.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._recorder is None:
            return
        torch.cuda.set_sync_debug_mode("default")
        self._recorder.__exit__(None, None, None)
        self._recorder = None
        self.per_step.append(sum("synchroniz" in str(w.message) for w in self._seen))


def _batches_with_nan(steps: int, nan_at: int) -> DataLoader:
    """``steps`` batches of 2 images; one image of batch ``nan_at`` is NaN (so is its loss)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2 * steps, 3, 64, 64, generator=g)
    images[2 * nan_at] = math.nan
    masks = (images[:, 0] > 0).to(torch.uint8)
    return DataLoader(TensorDataset(images, masks), batch_size=2)


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_nonfinite_check_syncs_every_step_only_to_skip(mode):
    """``stop`` reads each step's finite flag once it has reached the host: a clean step waits for
    the device nowhere. ``skip`` must know before backward: a sync every step (which also shows
    that the counter sees syncs)."""
    steps, nan_at = 10, 6
    counter = SyncCounter()
    torch.manual_seed(0)
    module = SegmentationModule(
        encoder_name="tu-test_resnet", num_classes=2, loss={"ce": 1.0, "dice": 0.5}
    )
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,  # the bar reads the loss with .item(): a sync of its own
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[counter, NonFiniteLoss(mode)],
    )
    if mode == "stop":
        with pytest.raises(
            FloatingPointError, match=f"non-finite training loss .* at step {nan_at}"
        ):
            trainer.fit(module, _batches_with_nan(steps, nan_at))
    else:
        trainer.fit(module, _batches_with_nan(steps, nan_at))
        assert trainer.callback_metrics["train/skipped_batches"] == 1
    clean = counter.per_step[1:nan_at]  # after the first step (lazy initialisation), before the NaN
    assert len(clean) == nan_at - 1
    if mode == "stop":
        assert clean == [0] * len(clean), f"synchronisations per step: {counter.per_step}"
    else:
        assert min(clean) >= 1, f"synchronisations per step: {counter.per_step}"


@pytest.mark.xfail(
    raises=torch.OutOfMemoryError,
    reason="suspected: after summing on the host, sliding_window moves the (C, H, W) float32 "
    "result back to the device, which needs nearly the room the sums did not find",
)
def test_sliding_window_finishes_under_a_real_memory_cap():
    """A real out-of-memory: the allocator is capped (``set_per_process_memory_fraction``) at 1 GiB
    above what is allocated: two 512 px tiles and their activations fit (~0.2 GB), 19 float32
    planes of 4096x8192 (2.5 GB) do not."""
    torch.manual_seed(0)
    model = SegmentationModule(encoder_name="tu-test_resnet", num_classes=19).eval().cuda()
    image = torch.randn(1, 3, 4096, 8192, device="cuda")

    def stitch() -> torch.Tensor:
        return sliding_window(model, image, tile_size=512, overlap=0.25, tile_batch_size=2)

    expected = stitch().cpu()
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_allocated() + 2**30
    torch.cuda.set_per_process_memory_fraction(
        cap / torch.cuda.get_device_properties(0).total_memory
    )
    try:
        with pytest.warns(UserWarning, match="host memory"):
            stitched = stitch()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    torch.testing.assert_close(stitched.cpu(), expected)


def test_a_label_the_model_lacks_is_a_data_error_not_a_device_side_assert():
    """On the CPU a bad target is an IndexError inside the loss; on CUDA it would be a device-side
    assert that poisons the process. The module ignores such pixels on the device and stops the run
    with a DataError that counts them."""
    images = torch.randn(4, 3, 64, 64)
    masks = torch.randint(0, 3, (4, 64, 64))
    masks[0, :2] = 7
    module = SegmentationModule(num_classes=3, encoder_name="tu-test_resnet", encoder_weights=None)
    trainer = L.Trainer(
        accelerator="gpu", devices=1, max_steps=2, logger=False, enable_checkpointing=False
    )
    with pytest.raises(DataError, match="128 pixels of the train masks"):
        trainer.fit(module, DataLoader(TensorDataset(images, masks), batch_size=2))
    torch.cuda.synchronize()  # the device is still usable: no assert fired
