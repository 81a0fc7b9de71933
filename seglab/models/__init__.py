from seglab.models.factory import SMP_ARCHS, create_model
from seglab.models.module import SegmentationModule
from seglab.models.param_groups import param_groups

__all__ = ["SMP_ARCHS", "SegmentationModule", "create_model", "param_groups"]
