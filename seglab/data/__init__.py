from seglab.data.augment import Augment, BatchAugment
from seglab.data.datamodule import SegmentationDataModule, ignore_stop_signals
from seglab.data.datasets.ade20k import ADE20KDataModule
from seglab.data.datasets.base import SegmentationDataset
from seglab.data.datasets.camvid import CamVidDataModule
from seglab.data.datasets.cityscapes import CityscapesDataModule
from seglab.data.datasets.folder import FolderDataModule
from seglab.data.datasets.inria import InriaAerialDataModule
from seglab.data.datasets.pets import OxfordPetsDataModule
from seglab.data.datasets.raster import RasterDataModule
from seglab.data.datasets.synthetic import SyntheticDataModule
from seglab.data.datasets.voc import VOCDataModule
from seglab.data.io import DataError
from seglab.data.sampling import RareClassSampling
from seglab.data.streaming import StreamingDataModule

__all__ = [
    "ADE20KDataModule",
    "Augment",
    "BatchAugment",
    "CamVidDataModule",
    "CityscapesDataModule",
    "DataError",
    "FolderDataModule",
    "InriaAerialDataModule",
    "OxfordPetsDataModule",
    "RareClassSampling",
    "RasterDataModule",
    "SegmentationDataModule",
    "SegmentationDataset",
    "StreamingDataModule",
    "SyntheticDataModule",
    "VOCDataModule",
    "ignore_stop_signals",
]
