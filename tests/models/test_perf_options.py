"""Throughput options of SegmentationModule: channels_last, torch.compile, the non-finite check."""

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from seglab import SegmentationModule


def _module(**kwargs) -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(arch="unet", encoder_name="tu-test_resnet", num_classes=3, **kwargs)


def _loader(n: int = 4, size: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    masks = (images[:, 0] > 0).to(torch.uint8)
    return DataLoader(TensorDataset(images, masks), batch_size=2)


def _trainer(**kwargs) -> L.Trainer:
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _conv_weights(module: SegmentationModule) -> list[torch.Tensor]:
    return [p for p in module.model.parameters() if p.ndim == 4]


def test_channels_last_converts_the_network_and_its_inputs():
    module = _module(channels_last=True)
    weights = _conv_weights(module)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)  # really converted, not 1x1 by chance
    seen = []
    module.model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    _trainer(max_steps=2).fit(module, _loader())
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    # training keeps the format (the optimizer updates in place) and the step did learn
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(module))
    assert not torch.equal(_conv_weights(module)[0], _conv_weights(_module())[0])


def test_channels_last_gives_the_same_logits_as_the_contiguous_model():
    reference, converted = _module().eval(), _module(channels_last=True).eval()
    converted.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), reference(x), atol=1e-4, rtol=1e-4)


def test_perf_options_are_not_saved_in_checkpoints():
    module = _module(channels_last=True, compile={"backend": "eager"})
    assert "channels_last" not in module.hparams and "compile" not in module.hparams


def test_compiled_fit_keeps_checkpoint_keys_and_loads_uncompiled(tmp_path):
    graphs = []

    def backend(graph_module, example_inputs):  # records what dynamo hands over, runs it as is
        graphs.append(graph_module)
        return graph_module.forward

    module = _module(compile={"backend": backend})
    trainer = _trainer(max_steps=2)
    trainer.fit(module, _loader())
    assert graphs, "the network did not go through torch.compile"
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert list(saved) == list(_module().state_dict())  # no `_orig_mod.` prefixes

    loaded = SegmentationModule.load_from_checkpoint(path)
    assert loaded.compile_kwargs is None
    assert getattr(loaded.model, "_compiled_call_impl", None) is None
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, module.state_dict()[name])


def test_compile_true_uses_the_default_backend_without_arguments():
    assert _module(compile=True).compile_kwargs == {}
    assert _module(compile={"mode": "max-autotune"}).compile_kwargs == {"mode": "max-autotune"}
    assert _module().compile_kwargs is None


@pytest.mark.slow
def test_compile_with_inductor_trains_on_cpu():
    """The real default backend (inductor, needs a C compiler) for one fit step."""
    module = _module(compile=True)
    trainer = _trainer(max_steps=1)
    trainer.fit(module, _loader(n=2))
    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_nonfinite_stop_raises_before_a_diverged_checkpoint_is_written(tmp_path):
    """``stop`` reads each step's finite flag without waiting for the device; a checkpoint save
    waits for it, so the last checkpoint on disk is the last good one."""
    module = _module()
    criterion = module.criterion.forward

    def nan_from_step_1(logits, target):
        loss = criterion(logits, target)
        return loss * math.nan if module.global_step >= 1 else loss

    module.criterion.forward = nan_from_step_1
    checkpoints = ModelCheckpoint(tmp_path, every_n_train_steps=1, save_top_k=-1)
    trainer = _trainer(max_steps=4, enable_checkpointing=True, callbacks=[checkpoints])
    with pytest.raises(FloatingPointError, match=r"non-finite training loss .* at step 1"):
        trainer.fit(module, _loader(n=8))
    files = sorted(p.name for p in tmp_path.glob("*.ckpt"))
    assert files == ["epoch=0-step=1.ckpt"]  # after step 0 only
    state = torch.load(tmp_path / files[0], weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
