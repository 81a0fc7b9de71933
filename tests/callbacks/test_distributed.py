"""Unused encoder stages are dropped when the network is built; any parameter that still gets no
gradient is named before DDP training starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from seglab import SegmentationModule, UnusedParameters
from seglab.callbacks.distributed import example_input, unused_parameters
from seglab.cli import main
from seglab.compat import ddp_finds_unused_parameters
from seglab.errors import ConfigError
from seglab.models.factory import create_model
from tests.conftest import REPO, TINY
from tests.foreign import BranchyNet


@pytest.mark.parametrize(
    ("arch", "encoder", "kwargs", "dropped"),
    [
        ("unet", "resnet18", {"encoder_depth": 4, "decoder_channels": [32, 16, 8, 4]}, ["layer4"]),
        ("pspnet", "resnet18", {}, ["layer3", "layer4"]),  # PSPNet's default depth is 3
        ("unet", "mit_b0", {"encoder_depth": 4, "decoder_channels": [32, 16, 8, 4]}, ["block4"]),
        ("unet", "resnet18", {}, []),
    ],
)
def test_stages_the_network_does_not_run_are_not_built(arch, encoder, kwargs, dropped):
    model = create_model(arch, encoder, None, 3, 3, **kwargs)
    params = {name for name, _ in model.named_parameters()}
    for stage in dropped:
        assert not any(p.startswith(f"encoder.{stage}.") for p in params), stage
    model(torch.zeros(2, 3, 64, 64)).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_an_old_checkpoint_with_the_dropped_stage_still_loads(tmp_path):
    module = SegmentationModule(
        arch="unet",
        encoder_name="resnet18",
        num_classes=3,
        model_kwargs={"encoder_depth": 4, "decoder_channels": [32, 16, 8, 4]},
    )
    state = module.state_dict()
    old = {**state, "model.encoder.layer4.0.conv1.weight": torch.zeros(512, 256, 3, 3)}
    checkpoint = {"state_dict": old, "hyper_parameters": dict(module.hparams)}
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])  # strict: nothing unexpected is left


def test_the_check_names_the_unused_branch_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    module = SegmentationModule(network=BranchyNet(), num_classes=3)
    module.model.head.register_buffer("count", torch.zeros(1))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.eval()
    rng = torch.get_rng_state()
    unused = unused_parameters(module, example_input(module))
    assert unused == ["model.unused_branch.0.weight", "model.unused_branch.0.bias"]
    assert not module.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())
    # frozen parameters are no problem for DDP
    module.model.unused_branch.requires_grad_(False)
    assert unused_parameters(module, example_input(module)) == []


def _setup(callback: UnusedParameters, strategy: DDPStrategy) -> None:
    module = SegmentationModule(network=BranchyNet(), num_classes=3)
    trainer = SimpleNamespace(strategy=strategy, is_global_zero=True)
    callback.setup(trainer, module, "fit")


def test_under_ddp_unused_parameters_stop_before_training_with_the_way_out(capsys):
    with pytest.raises(ConfigError) as error:
        _setup(UnusedParameters(), DDPStrategy())
    message = str(error.value)
    assert "model.unused_branch (2 tensors)" in message
    assert "ddp_find_unused_parameters_true" in message and "requires_grad=False" in message

    strategy = DDPStrategy()  # asked for: set for the user, with a notice
    _setup(UnusedParameters(find_unused_parameters=True), strategy)
    assert ddp_finds_unused_parameters(strategy)
    assert "model.unused_branch (2 tensors)" in capsys.readouterr().err


def test_the_command_adds_the_check_and_the_quickstart_has_nothing_unused():
    cli = main_fit("--trainer.fast_dev_run", "1")
    checks = [c for c in cli.trainer.callbacks if isinstance(c, UnusedParameters)]
    assert len(checks) == 1
    module = cli.model
    assert unused_parameters(module, example_input(module)) == []


def main_fit(*extra: str):
    return main(["fit", *TINY, *extra])


@pytest.mark.slow
def test_a_ddp_fit_of_a_network_with_an_unused_branch_stops_at_once_naming_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    network = {"class_path": "tests.foreign.BranchyNet", "init_args": {"num_classes": 6}}
    argv = [
        sys.executable, "-m", "seglab", "fit", *TINY, "--model.network", json.dumps(network),
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "2",
    ]  # fmt: skip
    run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "model.unused_branch (2 tensors)" in run.stderr
    assert "Traceback" not in run.stderr and "not used in producing the loss" not in run.stderr

    find = ["--trainer.callbacks+", "seglab.callbacks.UnusedParameters"]
    find += ["--trainer.callbacks.find_unused_parameters", "true"]
    run = subprocess.run(
        [*argv, *find], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DDP looks for unused parameters at every step" in run.stderr
