"""NonFiniteLoss: stop before a diverged model is validated or saved, or skip the step."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from seglab.callbacks import NonFiniteLoss
from seglab.cli import main
from seglab.errors import NonFiniteLossError
from tests.callbacks.conftest import loader, trainer
from tests.conftest import TINY, nan_from_step


def test_stop_raises_before_a_diverged_checkpoint_is_written(make_module, tmp_path):
    """``stop`` reads each step's flag without waiting for the device; a checkpoint save waits
    for it, so the last checkpoint on disk is the last good one."""
    module = make_module()
    nan_from_step(module, 1)
    checkpoints = ModelCheckpoint(tmp_path, every_n_train_steps=1, save_top_k=-1)
    fit = trainer(max_steps=4, enable_checkpointing=True, callbacks=[checkpoints, NonFiniteLoss()])
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss .* at step 1"):
        fit.fit(module, loader(n=8))
    files = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert files == ["epoch=0-step=1.ckpt"]  # after step 0 only
    state = torch.load(tmp_path / files[0], weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_skip_leaves_parameters_optimizer_and_statistics_untouched_and_counts(make_module):
    """A NaN image: its forward pass spoils BatchNorm's running statistics and its gradients are
    NaN; the skipped step must leave the module exactly as it was."""
    module = make_module()
    data = loader(n=8)
    data.dataset.tensors[0][2] = math.nan  # the first image of the second batch
    guard = NonFiniteLoss("skip")
    snapshots = []

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snapshots.append({k: v.clone() for k, v in pl_module.state_dict().items()})
            snapshots[-1]["optimizer"] = [
                s["exp_avg"].clone() for s in trainer.optimizers[0].state.values()
            ]

    fit = trainer(max_steps=3, callbacks=[guard, Snapshot()])
    fit.fit(module, data)
    assert guard.skipped == 1 and fit.callback_metrics["train/skipped_batches"] == 1
    for key, value in snapshots[0].items():  # the skipped batch changed nothing
        if key == "optimizer":
            assert all(torch.equal(a, b) for a, b in zip(snapshots[1][key], value, strict=True))
        else:
            assert torch.equal(snapshots[1][key], value), key
    assert any(
        not torch.equal(snapshots[2][k], v) for k, v in snapshots[1].items() if k != "optimizer"
    )
    assert all(
        torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point()
    )


def test_the_stop_message_names_an_option_that_switches_to_skip(make_module):
    """The message's option, given to the seglab command verbatim, gives a skipping guard."""
    module = make_module()
    nan_from_step(module, 0)
    with pytest.raises(NonFiniteLossError) as raised:
        trainer(max_steps=2, callbacks=[NonFiniteLoss()]).fit(module, loader())
    option = str(raised.value).split("add ", 1)[1]
    cli = main(["fit", *TINY, "--trainer.max_steps", "1", *option.split()])
    guards = [c for c in cli.trainer.callbacks if isinstance(c, NonFiniteLoss)]
    assert [g.policy for g in guards] == ["skip"]
