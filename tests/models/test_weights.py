import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from seglab.cli import main
from seglab.models.factory import create_model
from tests.conftest import user_error

REPO = Path(__file__).resolve().parents[2]


def _reference_encoder_state(encoder_name="tu-test_resnet"):
    torch.manual_seed(123)
    return create_model("unet", encoder_name, None).encoder.state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_encoder_weights_from_a_local_file(tmp_path, suffix):
    state = _reference_encoder_state()
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(0)  # a different random init: equal tensors can only come from the file
    model = create_model("unet", "tu-test_resnet", str(path))
    loaded = model.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_plain_timm_checkpoint_with_a_classifier_head_loads(tmp_path):
    import timm

    timm_model = timm.create_model("test_resnet")
    torch.save(
        timm_model.state_dict(), tmp_path / "timm.pth"
    )  # keys without smp's prefix, plus fc.*
    model = create_model("unet", "tu-test_resnet", str(tmp_path / "timm.pth"))
    assert torch.equal(model.encoder.model.conv1[0].weight, timm_model.conv1[0].weight)


def test_encoder_from_a_lightning_checkpoint(tmp_path):
    from seglab.models.module import SegmentationModule

    module = SegmentationModule(arch="fpn", encoder_name="tu-test_resnet", num_classes=3)
    torch.save({"state_dict": module.state_dict(), "epoch": 1}, tmp_path / "run.ckpt")
    model = create_model("unet", "tu-test_resnet", str(tmp_path / "run.ckpt"))
    expected = module.model.encoder.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.encoder.state_dict().items())


def test_a_file_that_does_not_fit_names_the_keys(tmp_path):
    state = dict(_reference_encoder_state())
    state["model.conv1.extra"] = torch.zeros(2)  # inside a layer the encoder has
    del state["model.conv1.0.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError,
        match=r"1 missing keys: model.conv1.0.weight; 1 unexpected keys: model.conv1.extra",
    ):
        create_model("unet", "tu-test_resnet", str(tmp_path / "bad.pth"))


def test_absent_weights_offline_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = (
        "from seglab.cli import main\n"
        "main(['fit', '--config', 'experiments/quickstart.yaml', '--trainer.fast_dev_run', '1',"
        " '--model.encoder_weights', 'imagenet', '--trainer.logger', 'false'])"
    )
    # An unreachable hub (a name that never resolves: the same on a machine with internet), and
    # HF_HUB_OFFLINE=1.
    for offline in ("0", "1"):
        env = {**os.environ, "HF_HUB_OFFLINE": offline, "HF_ENDPOINT": "https://hub.invalid"}
        start = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert time.monotonic() - start < 30
        assert run.returncode == 1
        assert "Traceback" not in run.stderr
        assert "'imagenet' weights of encoder 'resnet18'" in run.stderr
        assert "seglab weights fetch" in run.stderr


def test_cached_weights_load_without_any_network_call(tmp_path, monkeypatch):
    """A weight set in the hub cache is read with the hub forced offline."""
    from huggingface_hub import constants

    import seglab.models.weights as weights

    monkeypatch.setattr(weights, "_cached", lambda *source: True)
    seen = []

    def fake_get_encoder(*args, **kwargs):
        seen.append(constants.HF_HUB_OFFLINE)
        raise RuntimeError("stop here")

    monkeypatch.setattr(
        "segmentation_models_pytorch.encoders.hf_hub_download", lambda *a, **k: fake_get_encoder()
    )
    with pytest.raises(RuntimeError, match="stop here"):
        create_model("unet", "resnet18", "imagenet")
    assert seen == [True] and constants.HF_HUB_OFFLINE is False


def test_unknown_weight_set_lists_the_choices():
    with pytest.raises(ValueError, match=r"has no weights 'imagenet22k'.*imagenet"):
        create_model("unet", "resnet18", "imagenet22k")


def test_weights_command_fetch_skips_configs_without_downloads(capsys):
    main(["weights", "fetch", "--config", str(REPO / "experiments/quickstart.yaml")])
    assert "nothing to download" in capsys.readouterr().out


def test_weights_list_shows_the_cached_weights_of_both_caches(tmp_path):
    """A weight set in the Hugging Face hub cache (its real layout: blobs, a snapshot linking to
    them, a ref) and a torch hub file, each listed with its size."""
    repo = tmp_path / "hf" / "hub" / "models--smp-hub--resnet18.imagenet"
    commit = "0123456789abcdef0123456789abcdef01234567"
    for folder in ("blobs", "refs", f"snapshots/{commit}"):
        (repo / folder).mkdir(parents=True)
    (repo / "blobs" / "a1b2c3").write_bytes(b"\0" * 3_000_000)
    (repo / "snapshots" / commit / "model.safetensors").symlink_to("../../blobs/a1b2c3")
    (repo / "refs" / "main").write_text(commit)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"\0" * 2_000_000)
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    }
    env |= {"HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}
    listed = subprocess.run(
        [sys.executable, "-m", "seglab", "weights", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert ["hf", "smp-hub/resnet18.imagenet", "3.0", "MB", str(repo)] in lines, listed.stdout
    assert ["url", "resnet18-f37072fd.pth", "2.0", "MB"] in [line[:4] for line in lines]


def test_weights_fetch_without_network_fails_in_one_line(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("model:\n  encoder_name: resnet18\n  encoder_weights: imagenet\n")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    user_error(["weights", "fetch", "--config", str(cfg)], capsys, 1, "HF_HUB_OFFLINE is set")


@pytest.mark.parametrize("timm_name", ["tf_efficientnet_lite0", "resnet18"])
@pytest.mark.parametrize("arch", ["unet", "fcn8s"])
def test_a_full_timm_classification_checkpoint_loads_into_the_encoder(tmp_path, arch, timm_name):
    """What ``timm.create_model(name, pretrained=True).state_dict()`` gives: the classifier and,
    for EfficientNet, the head convolution and its norm (conv_head, bn2), which an encoder does
    not have. They are dropped; every encoder tensor comes from the file."""
    import timm

    torch.manual_seed(1)
    state = timm.create_model(timm_name).state_dict()
    path = tmp_path / f"{timm_name}.pth"
    torch.save(state, path)
    encoder_name = f"tu-{timm_name}" if arch == "unet" and timm_name != "resnet18" else timm_name
    torch.manual_seed(2)  # another random init: equal tensors can only come from the file
    model = create_model(arch, encoder_name, str(path), num_classes=3)
    encoder = model.encoder.state_dict()
    assert encoder
    for key, value in encoder.items():
        source = key.removeprefix("model.")
        if source.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, state[source]), key


def test_a_weights_path_is_never_taken_for_a_download(tmp_path):
    for arch in ("unet", "fcn8s"):
        missing = tmp_path / "weights" / "encoder.ckpt"
        with pytest.raises(ValueError, match=r"encoder\.ckpt does not exist"):
            create_model(arch, "resnet18", str(missing), num_classes=2)
