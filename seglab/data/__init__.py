from seglab.data.datamodule import SegmentationDataModule
from seglab.data.datasets import FolderDataModule, SegmentationDataset, SyntheticDataModule
from seglab.data.io import DataError
from seglab.data.transforms import Augment

__all__ = [
    "Augment",
    "DataError",
    "FolderDataModule",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SyntheticDataModule",
]
