from seglab.data.augment import Augment, BatchAugment
from seglab.data.datamodule import SegmentationDataModule, ignore_stop_signals
from seglab.data.datasets.ade20k import ADE20KDataModule
from seglab.data.datasets.base import SegmentationDataset
from seglab.data.datasets.camvid import CamVidDataModule
from seglab.data.datasets.cityscapes import CityscapesDataModule
from seglab.data.datasets.folder import FolderDataModule
from seglab.data.datasets.pets import OxfordPetsDataModule
from seglab.data.datasets.synthetic import SyntheticDataModule
from seglab.data.datasets.voc import VOCDataModule
from seglab.data.io import DataError
from seglab.data.sampling import RareClassSampling

__all__ = [
    "ADE20KDataModule",
    "Augment",
    "BatchAugment",
    "CamVidDataModule",
    "CityscapesDataModule",
    "DataError",
    "FolderDataModule",
    "OxfordPetsDataModule",
    "RareClassSampling",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "VOCDataModule",
    "ignore_stop_signals",
]
