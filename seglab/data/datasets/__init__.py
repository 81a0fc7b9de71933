from seglab.data.dataset import SegmentationDataset
from seglab.data.datasets.ade20k import ADE20KDataModule
from seglab.data.datasets.camvid import CamVidDataModule
from seglab.data.datasets.cityscapes import CityscapesDataModule
from seglab.data.datasets.folder import FolderDataModule, FolderDataset
from seglab.data.datasets.pets import OxfordPetsDataModule
from seglab.data.datasets.synthetic import SyntheticDataModule, SyntheticDataset
from seglab.data.datasets.voc import VOCDataModule

__all__ = [
    "ADE20KDataModule",
    "CamVidDataModule",
    "CityscapesDataModule",
    "FolderDataModule",
    "FolderDataset",
    "OxfordPetsDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
    "SyntheticDataset",
    "VOCDataModule",
]
