from seglab.data.dataset import SegmentationDataset
from seglab.data.datasets.folder import FolderDataModule, FolderDataset
from seglab.data.datasets.synthetic import SyntheticDataModule, SyntheticDataset

__all__ = [
    "FolderDataModule",
    "FolderDataset",
    "SegmentationDataset",
    "SyntheticDataModule",
    "SyntheticDataset",
]
