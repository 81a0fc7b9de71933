"""``seglab export``: a checkpoint as ONNX and TorchScript, normalized image in, logits out.

    seglab export --ckpt_path last.ckpt --output_dir exported [--formats onnx torchscript] [--opset 17]

Batch, height and width stay dynamic: the graph pads the input to the output stride and crops the
logits back, like ``SegmentationModule.forward``, but unconditionally, so tracing records the padding
for every size instead of the branch taken by the example input. Each exported file is run once on
two input sizes and compared with PyTorch (ONNX with onnxruntime when it is installed).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMATS = ("onnx", "torchscript")


class ExportModel(nn.Module):
    """The network of a ``SegmentationModule`` with its stride padding, fit for tracing."""

    def __init__(self, net: nn.Module, size_divisor: int) -> None:
        super().__init__()
        self.net = net
        self.size_divisor = size_divisor

    def forward(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2], image.shape[-1]
        d = self.size_divisor
        padded = F.pad(image, (0, (d - w % d) % d, 0, (d - h % d) % d))
        return self.net(padded)[..., :h, :w]


def export_onnx(model: nn.Module, example: Tensor, path: Path, opset: int = 17) -> Path:
    """ONNX with dynamic batch, height and width (TorchScript-based exporter: it keeps the
    shape arithmetic of the padding symbolic)."""
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=opset,
            dynamo=False,
        )
    return path


def export_torchscript(model: nn.Module, example: Tensor, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    traced.save(str(path))
    return path


def run_exported(path: Path, image: Tensor) -> Tensor | None:
    """Logits of an exported file; None for ONNX when onnxruntime is not installed."""
    if path.suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": image.numpy()})[0])
    return torch.jit.load(str(path))(image)


@torch.no_grad()
def check_exported(
    path: Path,
    model: nn.Module,
    sizes: Sequence[tuple[int, int]],
    in_channels: int = 3,
    atol: float = 1e-4,
) -> float | None:
    """Largest absolute difference to PyTorch over ``sizes``; raises when it exceeds ``atol``."""
    worst: float | None = None
    for batch, (h, w) in enumerate(sizes, 1):
        image = torch.randn(batch, in_channels, h, w, generator=torch.Generator().manual_seed(h))
        got = run_exported(path, image)
        if got is None:
            return None
        expected = model(image)
        if got.shape != expected.shape:
            raise RuntimeError(
                f"{path}: output {tuple(got.shape)} for input {(batch, h, w)}, "
                f"PyTorch gives {tuple(expected.shape)}"
            )
        diff = float((got - expected).abs().max())
        if diff > atol:
            raise RuntimeError(
                f"{path}: differs from PyTorch by {diff:.2e} at {h}x{w} (atol {atol})"
            )
        worst = diff if worst is None else max(worst, diff)
    return worst


def export(
    ckpt_path: str | Path,
    output_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    opset: int = 17,
    example_size: tuple[int, int] = (256, 256),
    check_sizes: Sequence[tuple[int, int]] = ((256, 256), (200, 333)),
) -> dict[str, Path]:
    """Writes ``model.onnx`` / ``model.ts`` from a checkpoint and checks them against PyTorch."""
    from seglab.models import SegmentationModule  # here: seglab.models imports seglab.inference

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"--formats: unknown {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"--ckpt_path: {ckpt_path} not found")
    module = SegmentationModule.load_from_checkpoint(ckpt_path, map_location="cpu").eval()
    model = ExportModel(module.model, module.size_divisor).eval()
    in_channels = int(module.hparams.in_channels)
    example = torch.zeros(1, in_channels, *example_size)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        if fmt == "onnx":
            path = export_onnx(model, example, output_dir / "model.onnx", opset)
        else:
            path = export_torchscript(model, example, output_dir / "model.ts")
        diff = check_exported(path, model, check_sizes, in_channels)
        status = "not checked (onnxruntime missing)" if diff is None else f"max |diff| {diff:.1e}"
        print(f"{fmt}: {path} ({status})")
        written[fmt] = path
    return written


def main(argv: list[str]) -> dict[str, Path]:
    parser = argparse.ArgumentParser(prog="seglab export", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint to export")
    parser.add_argument("--output_dir", required=True, help="directory for model.onnx / model.ts")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    args = parser.parse_args(argv)
    return export(args.ckpt_path, args.output_dir, args.formats, args.opset)
