"""``seglab export``: ONNX and TorchScript give PyTorch's logits at any input size."""

from __future__ import annotations

import pytest
import torch

from seglab.cli import main
from seglab.inference.export import run_exported
from seglab.models import SegmentationModule
from tests.conftest import user_error

pytest.importorskip("onnxruntime")


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
