"""ChannelsLast and Compile: throughput switches that leave the model and its checkpoints alone.

Every test here runs the callbacks through a Trainer: converting or compiling the model by hand
would test torch, not the callbacks.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch._dynamo.utils import counters

from seglab import SegmentationModule
from seglab.callbacks import ChannelsLast, Compile
from tests.callbacks.conftest import loader, trainer

CHANNELS_LAST = torch.channels_last


def conv_weights(module) -> list[torch.Tensor]:
    return [p for p in module.model.parameters() if p.ndim == 4]


def first_conv(module) -> torch.nn.Conv2d:
    return next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d))


class Watch(L.Callback):
    """Records, while the loops run, the memory format of the network's 4-d weights (the module's
    and the optimizer's), of the first convolution's output and of the logits, the first training
    step's loss and the gradients the optimizer is about to apply."""

    def __init__(self) -> None:
        self.weights: list[bool] = []  # every 4-d weight channels-last, at each batch
        self.optimizer_weights: list[bool] = []
        self.conv_outputs: list[bool] = []
        self.logits: list[bool] = []
        self.losses: list[float] = []
        self.gradients: list[torch.Tensor] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        def conv_output(_module, _args, output) -> None:
            self.conv_outputs.append(output.is_contiguous(memory_format=CHANNELS_LAST))

        def logits(_module, _args, output) -> None:
            self.logits.append(output.is_contiguous(memory_format=CHANNELS_LAST))

        first_conv(pl_module).register_forward_hook(conv_output)
        pl_module.model.register_forward_hook(logits)

    def _weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = conv_weights(pl_module)
        self.weights.append(all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in weights))
        if trainer.training:
            params = [p for g in trainer.optimizers[0].param_groups for p in g["params"]]
            in_format = [
                p.is_contiguous(memory_format=CHANNELS_LAST) for p in params if p.ndim == 4
            ]
            self.optimizer_weights.append(len(in_format) == len(weights) and all(in_format))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._weights(trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dl_idx=0) -> None:
        self._weights(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad.reshape(-1) for p in pl_module.parameters() if p.grad is not None]
        self.gradients.append(torch.cat(grads).clone())


def test_channels_last_trains_in_channels_last(make_module):
    """The weights are channels-last from the first training batch on (the module's and those the
    optimizer steps), the convolutions and the logits follow, and the model learns."""
    module, watch = make_module(), Watch()
    assert not all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in conv_weights(module))
    trainer(max_steps=2, callbacks=[ChannelsLast(), watch]).fit(module, loader())
    assert watch.weights == [True, True]
    assert watch.optimizer_weights == [True, True]
    assert watch.conv_outputs and all(watch.conv_outputs)
    assert watch.logits and all(watch.logits)
    assert not torch.equal(conv_weights(module)[0], conv_weights(make_module())[0])  # it learned


def test_channels_last_computes_what_the_contiguous_model_computes(make_module):
    """The same loss and (to float32 rounding) the same gradients in the first training step, and
    the same validation loss and logits: the callback changes the memory layout, not the numbers."""
    watches = {}
    for name, callbacks in {"plain": [], "channels_last": [ChannelsLast()]}.items():
        watches[name] = Watch()
        fit = trainer(max_steps=1, callbacks=[*callbacks, watches[name]])
        fit.fit(make_module(), loader(size=64))
    plain, watch = watches["plain"], watches["channels_last"]
    assert watch.weights == [True] and plain.weights == [False]  # the runs really differ
    torch.testing.assert_close(watch.losses, plain.losses, rtol=1e-5, atol=1e-6)
    similarity = torch.cosine_similarity(watch.gradients[0], plain.gradients[0], dim=0)
    assert similarity > 0.999

    reference, converted = make_module(), make_module()
    (plain_metrics,) = trainer().validate(reference, loader(size=64))
    (metrics,) = trainer(callbacks=[ChannelsLast()]).validate(converted, loader(size=64))
    assert all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in conv_weights(converted))
    assert metrics.keys() == plain_metrics.keys()
    for name, value in metrics.items():
        assert value == pytest.approx(plain_metrics[name], rel=1e-4, abs=1e-5), name
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), reference(x), atol=1e-4, rtol=1e-4)


def test_channels_last_applies_to_validation_too(make_module):
    module, watch = make_module(), Watch()
    trainer(callbacks=[ChannelsLast(), watch]).validate(module, loader())
    assert watch.weights == [True, True]
    assert watch.conv_outputs and all(watch.conv_outputs)


def test_channels_last_checkpoints_load_into_a_plain_model(make_module, tmp_path):
    """Checkpoints are the same with or without the callback: the same keys, and a model without
    the callback loads them to the trained values."""
    module = make_module()
    fit = trainer(max_steps=2, callbacks=[ChannelsLast()])
    fit.fit(module, loader())
    path = tmp_path / "channels_last.ckpt"
    fit.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert list(saved) == list(make_module().state_dict())
    loaded = SegmentationModule.load_from_checkpoint(path)
    assert all(w.is_contiguous() for w in conv_weights(loaded))
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, module.state_dict()[name])


@pytest.fixture
def compiled_graphs():
    """A ``torch.compile`` backend that records the graphs dynamo hands over and runs them as they
    are, and the list of those graphs' example inputs."""
    torch._dynamo.reset()  # nothing compiled by an earlier test is reused
    graphs: list[list] = []

    def backend(graph_module, example_inputs):
        graphs.append(list(example_inputs))
        return graph_module.forward

    yield backend, graphs
    torch._dynamo.reset()


def batch_shaped(graphs: list[list], shape: tuple[int, ...]) -> bool:
    """Whether some recorded graph took a tensor of ``shape`` (the images: the network's input)."""
    return any(isinstance(x, torch.Tensor) and tuple(x.shape) == shape for g in graphs for x in g)


def test_compiled_fit_keeps_checkpoint_keys_and_loads_uncompiled(
    make_module, compiled_graphs, tmp_path
):
    backend, graphs = compiled_graphs
    module = make_module()
    fit = trainer(max_steps=2, callbacks=[Compile(backend=backend)])
    fit.fit(module, loader())
    assert batch_shaped(graphs, (2, 3, 32, 32)), "the network did not go through torch.compile"
    path = tmp_path / "compiled.ckpt"
    fit.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert list(saved) == list(make_module().state_dict())  # no `_orig_mod.` prefixes
    loaded = SegmentationModule.load_from_checkpoint(path)
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, module.state_dict()[name])


def test_compile_compiles_for_validate_but_not_for_predict(make_module, compiled_graphs):
    backend, graphs = compiled_graphs
    trainer(callbacks=[Compile(backend=backend)]).predict(make_module(), loader())
    assert graphs == [], "predict compiled the network (images of every size would recompile)"
    trainer(callbacks=[Compile(backend=backend)]).validate(make_module(), loader())
    assert batch_shaped(graphs, (2, 3, 32, 32))


def test_compile_names_a_missing_submodule(make_module):
    with pytest.raises(ValueError, match=r"Compile.module: SegmentationModule has no submodule"):
        trainer(max_steps=1, callbacks=[Compile(module="net")]).fit(make_module(), loader())


@pytest.mark.slow
def test_compile_with_inductor_trains_on_cpu(make_module):
    """The real default backend (inductor, needs a C compiler) for one fit step: the network goes
    through inductor and the step's loss is the uncompiled model's."""
    plain = trainer(max_steps=1)
    plain.fit(make_module(), loader(n=2))
    torch._dynamo.reset()
    counters.clear()
    fit = trainer(max_steps=1, callbacks=[Compile()])
    try:
        fit.fit(make_module(), loader(n=2))
    finally:
        torch._dynamo.reset()
    assert counters["frames"]["ok"] >= 1, "nothing was compiled"
    assert counters["aot_autograd"]["ok"] >= 1 and counters["inductor"], "not through inductor"
    assert fit.global_step == 1
    loss, reference = fit.callback_metrics["train/loss"], plain.callback_metrics["train/loss"]
    torch.testing.assert_close(loss, reference, rtol=1e-4, atol=1e-5)
