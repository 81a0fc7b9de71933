"""W&B sweep files: the agent's command line, built as the agent builds it, runs ``seglab fit``."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from seglab.cli import main
from tests.conftest import REPO, TINY

SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))


def sample(parameters: dict, rng: random.Random) -> dict:
    """One value per parameter: a listed value, or a draw from ``min``/``max``."""
    out = {}
    for name, spec in parameters.items():
        if "values" in spec:
            out[name] = rng.choice(spec["values"])
        elif spec.get("distribution") == "log_uniform_values":
            out[name] = math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
        else:
            out[name] = rng.uniform(spec["min"], spec["max"])
    return out


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The argv ``wandb agent`` runs (``wandb_agent.Agent._command_run``): env-var macros filled by
    ``create_sweep_command``, then each ``${macro}`` element replaced by its list of arguments."""
    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    macros |= {"env": ["/usr/bin/env"], "interpreter": ["python"], "program": [sweep["program"]]}
    argv = []
    for part in create_sweep_command(sweep["command"]):
        part = str(part)
        argv += (macros.get(part[2:-1]) or []) if part.startswith("${") else [part]
    return argv


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_files_maximise_val_miou_and_run_seglab_fit(path, capsys):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"] == {"name": "val/mIoU", "goal": "maximize"}
    values = sample(sweep["parameters"], random.Random(0))
    argv = agent_command(sweep, values)
    assert argv[:3] == ["/usr/bin/env", "seglab", "fit"]
    # Every parameter is an option the CLI knows: the config resolves with the sampled values
    # (numbers compared; a loss may be printed in another form than the sweep writes it).
    config = argv[argv.index("--config") + 1]
    argv[argv.index("--config") + 1] = str(REPO / config)
    with pytest.raises(SystemExit):
        main([*argv[2:], "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    for name, value in values.items():
        resolved = _get(printed, name)
        assert resolved is not None, name
        if isinstance(value, int | float):
            assert resolved == pytest.approx(value), name


def test_one_quickstart_trial_trains_with_the_substituted_values():
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "quickstart.yaml").read_text())
    values = sample(sweep["parameters"], random.Random(1))
    values["model.lr"] = 0.00123  # a value no YAML holds
    argv = agent_command(sweep, values)
    assert "--model.lr=0.00123" in argv
    argv[argv.index("--config") + 1] = str(REPO / "experiments" / "quickstart.yaml")
    tiny = TINY[2:]  # without its --config, which would undo the sweep's values
    fit = main([*argv[2:], *tiny, "--trainer.max_epochs=1", "--data.init_args.batch_size=2"])
    assert fit.trainer.global_step == 2
    assert fit.model.hparams.lr == 0.00123
    assert fit.trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(0.00123)
    assert fit.model.hparams.weight_decay == values["model.weight_decay"]
    expected_loss = yaml.safe_load(values["model.loss"])
    assert dict(fit.model.hparams.loss) == expected_loss
    saved = yaml.safe_load(Path("outputs/quickstart/config.yaml").read_text())  # the run dir
    assert saved["model"]["lr"] == 0.00123


def _get(config: dict, dotted: str) -> object:
    for key in dotted.split("."):
        config = config[key]
    return config
