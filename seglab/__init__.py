"""seglab: semantic segmentation experiments on PyTorch Lightning."""

from seglab.callbacks import (
    BestMetricsTable,
    BestModelArtifact,
    ClassMetricsReport,
    ExplainImages,
    PredictionImages,
    Throughput,
)
from seglab.data import (
    ADE20KDataModule,
    Augment,
    BatchAugment,
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
    "BatchAugment",
    "BestMetricsTable",
    "BestModelArtifact",
    "CamVidDataModule",
    "CityscapesDataModule",
    "ClassMetricsReport",
    "DataError",
    "ExplainImages",
    "FolderDataModule",
    "OxfordPetsDataModule",
    "PredictionImages",
    "SegmentationDataModule",
    "SegmentationModule",
    "SyntheticDataModule",
    "Throughput",
    "VOCDataModule",
]
