"""seglab: semantic segmentation experiments on PyTorch Lightning."""

from seglab.callbacks import BestMetricsTable
from seglab.data import (
    ADE20KDataModule,
    Augment,
    CamVidDataModule,
    CityscapesDataModule,
    DataError,
    FolderDataModule,
    OxfordPetsDataModule,
    SegmentationDataModule,
    SyntheticDataModule,
    VOCDataModule,
)
from seglab.models import SegmentationModule

__version__ = "0.1.0"

__all__ = [
    "ADE20KDataModule",
    "Augment",
    "BestMetricsTable",
    "CamVidDataModule",
    "CityscapesDataModule",
    "DataError",
    "FolderDataModule",
    "OxfordPetsDataModule",
    "SegmentationDataModule",
    "SegmentationModule",
    "SyntheticDataModule",
    "VOCDataModule",
]
