"""Every experiment file resolves with ``--print_config`` (no data or weights needed), and says
what it claims in its comments."""

import re
from pathlib import Path

import pytest
import yaml

from seglab.cli import main

EXPERIMENTS = sorted((Path(__file__).resolve().parents[3] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_print_config(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["arch"] and printed["data"]["class_path"]


HEADLINE = [
    p for p in EXPERIMENTS if p.stem != "quickstart" and not p.stem.endswith(("segnet", "fcn8s"))
]


@pytest.mark.parametrize("config", HEADLINE, ids=lambda p: p.stem)
def test_headline_experiments_state_their_reference_and_log_to_wandb(config):
    text = config.read_text()
    # The header states the published number and where it comes from, or that there is none.
    header = text.split("\nseed_everything:")[0]
    statement = header.split("# Reference", 1)[1].split("\n# Recipe")[0]
    has_number = re.search(r"\b\d{2}(\.\d+)?\b", statement) and re.search(r"\(.+\)", statement)
    assert has_number or re.search(r"\bnone\b", statement), statement
    cfg = yaml.safe_load(text)
    assert cfg["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert cfg["trainer"]["logger"]["init_args"]["project"] == "seglab"
    assert cfg["trainer"]["max_steps"] > 0
    ckpt = cfg["trainer"]["callbacks"][0]["init_args"]
    assert ckpt["monitor"] == "val/mIoU" and ckpt["mode"] == "max" and ckpt["save_last"]
    # The scale and throughput settings are spelled out, so a reader sees what to change.
    assert {
        "strategy",
        "sync_batchnorm",
        "accumulate_grad_batches",
        "precision",
        "benchmark",
    } <= set(cfg["trainer"])
    active = [c["class_path"] for c in cfg["trainer"]["callbacks"]]
    assert "seglab.callbacks.ValidateAtEnd" in active
    # ChannelsLast is on, or offered as a commented entry that says why it is off
    off_with_reason = r"# - class_path: seglab\.callbacks\.ChannelsLast +# \S"
    assert "seglab.callbacks.ChannelsLast" in active or re.search(off_with_reason, text)
    assert "# - class_path: seglab.callbacks.Compile" in text  # offered as a commented entry
    assert "seglab.callbacks.NonFiniteLoss" not in active  # the command adds it by itself
    data = cfg["data"]["init_args"]
    assert {"pin_memory", "persistent_workers", "prefetch_factor", "augment_on_device"} <= set(data)


@pytest.mark.parametrize(
    "config",
    [p for p in EXPERIMENTS if p.stem != "quickstart"],
    ids=lambda p: p.stem,
)
def test_dataset_experiments_say_how_they_treat_rare_classes(config):
    """Each recipe states which of class weights, OHEM and rare-class sampling it uses, and why;
    what it states is what its model and data settings do."""
    text = config.read_text()
    claim = text.split("# Rare classes: ")[1].split("\n")[0]
    cfg = yaml.safe_load(text)
    sampling = cfg["data"]["init_args"].get("rare_class_sampling")
    loss = cfg["model"]["loss"]
    weights = loss.get("init_args", {}).get("class_weights") if isinstance(loss, dict) else None
    ohem = "ohem" in str(loss).lower()
    if claim.startswith("none"):
        assert sampling is None and weights is None and not ohem
    elif claim.startswith("data.rare_class_sampling"):
        assert sampling["temperature"] > 0 and weights is None and "no class weights" in claim
    elif claim.startswith("median-frequency weights"):
        assert weights == "median_frequency" and sampling is None
    else:
        raise AssertionError(f"{config.name}: an unknown rare-class claim: {claim}")
