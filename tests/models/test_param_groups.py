import torch

from seglab import SegmentationModule
from seglab.models.param_groups import param_groups


def _tiny_module(**kwargs) -> SegmentationModule:
    return SegmentationModule(arch="unet", encoder_name="tu-test_resnet", num_classes=3, **kwargs)


def test_encoder_gets_the_backbone_multiplier_and_norms_and_biases_no_weight_decay():
    module = _tiny_module()
    groups = {g["name"]: g for g in param_groups(module, module.model.encoder, 0.1, 0.01, 0.05)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}

    names = {id(p): n for n, p in module.named_parameters()}
    for group in groups.values():
        for p in group["params"]:
            name = names[id(p)]
            assert name.startswith("model.encoder.") == group["name"].startswith("backbone")
            is_norm_or_bias = p.ndim <= 1
            assert (group["weight_decay"] == 0.0) == is_norm_or_bias, name
            assert group["lr"] == 0.01
    assert groups["backbone"]["lr_mult"] == groups["backbone_no_decay"]["lr_mult"] == 0.1
    assert groups["head"]["lr_mult"] == groups["head_no_decay"]["lr_mult"] == 1.0
    assert groups["backbone"]["weight_decay"] == 0.05
    # every parameter in exactly one group
    assert sum(len(g["params"]) for g in groups.values()) == len(list(module.parameters()))


def test_unset_lr_and_weight_decay_are_left_to_the_optimizer():
    module = _tiny_module()
    groups = {g["name"]: g for g in param_groups(module, module.model.encoder, 0.1)}
    assert all("lr" not in g for g in groups.values())
    assert "weight_decay" not in groups["head"] and groups["head_no_decay"]["weight_decay"] == 0.0


def test_a_network_without_a_backbone_has_head_groups_only():
    module = _tiny_module()
    groups = param_groups(module, None, 0.1)
    assert {g["name"] for g in groups} == {"head", "head_no_decay"}


def test_batchnorm_weights_are_in_the_no_decay_groups():
    module = _tiny_module()
    bn = next(m for m in module.model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    groups = {g["name"]: g for g in param_groups(module, module.model.encoder, 0.1)}
    assert any(p is bn.weight for p in groups["backbone_no_decay"]["params"])
