"""ChannelsLast and Compile: throughput switches that leave the model and its checkpoints alone."""

from __future__ import annotations

import pytest
import torch

from seglab import SegmentationModule
from seglab.callbacks import ChannelsLast, Compile
from tests.callbacks.conftest import loader, trainer


def conv_weights(module) -> list[torch.Tensor]:
    return [p for p in module.model.parameters() if p.ndim == 4]


def test_channels_last_converts_the_weights_and_convolutions_follow(make_module):
    module = make_module()
    outputs = []
    first_conv = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda _, args, out: outputs.append(out))
    trainer(max_steps=2, callbacks=[ChannelsLast()]).fit(module, loader())
    weights = conv_weights(module)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)  # really converted, not 1x1 by chance
    assert outputs and all(o.is_contiguous(memory_format=torch.channels_last) for o in outputs)
    assert not torch.equal(conv_weights(module)[0], conv_weights(make_module())[0])  # it learned


def test_channels_last_gives_the_same_logits_as_the_contiguous_model(make_module):
    reference, converted = make_module().eval(), make_module().eval()
    converted.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), reference(x), atol=1e-4, rtol=1e-4)


def test_compiled_fit_keeps_checkpoint_keys_and_loads_uncompiled(make_module, tmp_path):
    graphs = []

    def backend(graph_module, example_inputs):  # records what dynamo hands over, runs it as is
        graphs.append(graph_module)
        return graph_module.forward

    module = make_module()
    fit = trainer(max_steps=2, callbacks=[Compile(backend=backend)])
    fit.fit(module, loader())
    assert graphs, "the network did not go through torch.compile"
    path = tmp_path / "compiled.ckpt"
    fit.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert list(saved) == list(make_module().state_dict())  # no `_orig_mod.` prefixes
    loaded = SegmentationModule.load_from_checkpoint(path)
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, module.state_dict()[name])


def test_compile_names_a_missing_submodule(make_module):
    with pytest.raises(ValueError, match=r"Compile.module: SegmentationModule has no submodule"):
        trainer(max_steps=1, callbacks=[Compile(module="net")]).fit(make_module(), loader())


@pytest.mark.slow
def test_compile_with_inductor_trains_on_cpu(make_module):
    """The real default backend (inductor, needs a C compiler) for one fit step."""
    fit = trainer(max_steps=1, callbacks=[Compile()])
    fit.fit(make_module(), loader(n=2))
    assert fit.global_step == 1 and torch.isfinite(fit.callback_metrics["train/loss"])
