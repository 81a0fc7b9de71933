import torch

from seglab import SegmentationModule
from seglab.models.param_groups import param_groups


def _tiny_module(**kwargs) -> SegmentationModule:
    return SegmentationModule(arch="unet", encoder_name="tu-test_resnet", num_classes=3, **kwargs)


def test_encoder_gets_the_backbone_lr_and_norms_and_biases_no_weight_decay():
    module = _tiny_module(lr=0.01, backbone_lr_mult=0.1, weight_decay=0.05)
    groups = {g["name"]: g for g in param_groups(module, 0.01, 0.1, 0.05)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}

    names = {id(p): n for n, p in module.named_parameters()}
    for group in groups.values():
        for p in group["params"]:
            name = names[id(p)]
            assert name.startswith("model.encoder.") == group["name"].startswith("backbone")
            is_norm_or_bias = p.ndim <= 1
            assert (group["weight_decay"] == 0.0) == is_norm_or_bias, name
    assert groups["backbone"]["lr"] == groups["backbone_no_decay"]["lr"] == 0.01 * 0.1
    assert groups["head"]["lr"] == groups["head_no_decay"]["lr"] == 0.01
    assert groups["backbone"]["weight_decay"] == 0.05
    # every parameter in exactly one group
    assert sum(len(g["params"]) for g in groups.values()) == len(list(module.parameters()))


def test_batchnorm_weights_are_in_the_no_decay_groups():
    module = _tiny_module()
    bn = next(m for m in module.model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    groups = {g["name"]: g for g in param_groups(module, 1e-3, 0.1, 1e-4)}
    assert any(p is bn.weight for p in groups["backbone_no_decay"]["params"])
