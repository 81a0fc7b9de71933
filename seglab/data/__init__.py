from seglab.data.augment import Augment, BatchAugment
from seglab.data.datamodule import SegmentationDataModule
from seglab.data.datasets import (
    ADE20KDataModule,
    CamVidDataModule,
    CityscapesDataModule,
    FolderDataModule,
    OxfordPetsDataModule,
    SegmentationDataset,
    SyntheticDataModule,
    VOCDataModule,
)
from seglab.data.io import DataError

__all__ = [
    "ADE20KDataModule",
    "Augment",
    "BatchAugment",
    "CamVidDataModule",
    "CityscapesDataModule",
    "DataError",
    "FolderDataModule",
    "OxfordPetsDataModule",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "VOCDataModule",
]
