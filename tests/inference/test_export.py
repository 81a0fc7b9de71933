"""``seglab export``: ONNX and TorchScript give PyTorch's logits at any input size."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from seglab.cli import main
from seglab.inference.export import compare_logits, run_exported
from seglab.models import SegmentationModule
from tests.conftest import user_error

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_exported_models_match_pytorch_on_two_input_sizes(checkpoint, tmp_path):
    export = ["export", "--ckpt_path", str(checkpoint), "--output_dir", str(tmp_path)]
    written = main(export).written
    assert set(written) == {"onnx", "torchscript"}
    module = SegmentationModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    for shape in [(1, 3, 64, 64), (2, 3, 45, 67)]:  # batch, height and width are all dynamic
        image = torch.randn(shape)
        with torch.no_grad():
            expected = module(image)
        for path in written.values():
            got = run_exported(path, image)
            assert got.shape == (shape[0], 6, *shape[2:])
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_unknown_formats_and_missing_checkpoints_are_refused(tmp_path, capsys):
    args = ["export", "--ckpt_path", "x.ckpt", "--output_dir", str(tmp_path)]
    user_error([*args, "--formats", "tflite"], capsys, 2, "formats", "tflite")
    missing = str(tmp_path / "missing.ckpt")
    args = ["export", "--ckpt_path", missing, "--output_dir", str(tmp_path)]
    user_error(args, capsys, 2, missing)


def large_logits_checkpoint(path):
    """A tiny model whose logits reach the hundreds, as a trained model's do."""
    torch.manual_seed(0)
    module = SegmentationModule(
        arch="unet",
        encoder_name="tu-test_resnet",
        num_classes=3,
        mean=(0.5, 0.4, 0.3),
        std=(0.25, 0.2, 0.3),
        class_names=["sky", "road", "car"],
    )
    module.hparams["palette"] = [(0, 0, 255), (128, 64, 128), (255, 0, 0)]  # a data module's
    with torch.no_grad():
        head = module.model.segmentation_head[0]
        head.weight.mul_(500.0)
        head.bias.mul_(500.0)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save({**checkpoint, "pytorch-lightning_version": "2.6.0"}, path)
    return module.eval()


def test_large_logits_export_and_the_uint8_onnx_gives_the_models_class_ids(tmp_path):
    module = large_logits_checkpoint(tmp_path / "big.ckpt")
    image = torch.randint(0, 256, (3, 360, 480), dtype=torch.uint8)
    with torch.no_grad():
        assert module(torch.randn(1, 3, 64, 64)).abs().max() > 100
    args = ["export", "--ckpt_path", str(tmp_path / "big.ckpt"), "--output_dir", str(tmp_path)]
    written = main([*args, "--formats", "onnx", "torchscript", "--input", "uint8"]).written
    session = onnxruntime.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"image": image[None].numpy()})[0])
    expected = torch.nn.functional.one_hot(module.segment(image), 3).permute(2, 0, 1)[None]
    with torch.no_grad():  # the PyTorch logits behind segment(): same normalisation, same network
        x = (
            image[None].float() / 255 - torch.tensor([0.5, 0.4, 0.3])[:, None, None]
        ) / torch.tensor([0.25, 0.2, 0.3])[:, None, None]
        reference = module(x)
    assert torch.equal(reference.argmax(1), expected.argmax(1))
    agreement = compare_logits(logits, reference)  # ids differ only where rounding can flip them
    assert agreement.class_agreement > 0.9999 and agreement.relative < 1e-5
    card = json.loads(session.get_modelmeta().custom_metadata_map["seglab"])
    assert card["class_names"] == ["sky", "road", "car"] and card["mean"] == [0.5, 0.4, 0.3]
    assert card["input"].startswith("uint8") and card["channel_order"] == "RGB"
    extra = {"seglab.json": ""}
    scripted = torch.jit.load(str(written["torchscript"]), _extra_files=extra)
    assert json.loads(extra["seglab.json"])["palette"][1] == [128, 64, 128]
    assert compare_logits(scripted(image[None]), reference).class_agreement > 0.9999
    assert json.loads((tmp_path / "seglab.json").read_text())["ignore_index"] == 255


def test_a_missing_onnx_package_is_one_line_and_torchscript_is_still_written(
    tmp_path, monkeypatch, capsys
):
    large_logits_checkpoint(tmp_path / "m.ckpt")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    args = ["export", "--ckpt_path", str(tmp_path / "m.ckpt"), "--output_dir", str(tmp_path)]
    user_error(args, capsys, 1, "onnx", "pip install 'seglab[export]'")
    assert (tmp_path / "model.ts").is_file() and not (tmp_path / "model.onnx").exists()
