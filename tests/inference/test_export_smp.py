import segmentation_models_pytorch as smp
import torch

from seglab.cli import main
from seglab.models.module import SegmentationModule


def test_checkpoint_exports_to_a_standalone_smp_directory(tmp_path):
    module = SegmentationModule(arch="unet", encoder_name="tu-test_resnet", num_classes=3)
    module.eval()
    ckpt = tmp_path / "run.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": "2.6.0",
        },
        ckpt,
    )
    out = tmp_path / "exported"
    main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(out), "--formats", "smp"])
    assert {"config.json", "model.safetensors"} <= {p.name for p in (out / "smp").iterdir()}
    model = smp.from_pretrained(str(out / "smp")).eval()  # no seglab involved
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), module(x), atol=1e-5)
