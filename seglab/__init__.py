"""seglab: semantic segmentation experiments on PyTorch Lightning."""

from seglab.callbacks import BestMetricsTable
from seglab.data import (
    Augment,
    DataError,
    FolderDataModule,
    SegmentationDataModule,
    SyntheticDataModule,
)
from seglab.models import SegmentationModule

__version__ = "0.1.0"

__all__ = [
    "Augment",
    "BestMetricsTable",
    "DataError",
    "FolderDataModule",
    "SegmentationDataModule",
    "SegmentationModule",
    "SyntheticDataModule",
]
