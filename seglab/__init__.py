"""seglab: semantic segmentation experiments on PyTorch Lightning."""

from seglab.callbacks import (
    BestMetricsTable,
    BestModelArtifact,
    ChannelsLast,
    ClassMetricsReport,
    Compile,
    ExplainImages,
    FreezeEncoder,
    NonFiniteLoss,
    PredictionImages,
    Throughput,
    UnusedParameters,
    ValidateAtEnd,
)
from seglab.data import (
    ADE20KDataModule,
    Augment,
    BatchAugment,
    CamVidDataModule,
    CityscapesDataModule,
    DataError,
    FolderDataModule,
    InriaAerialDataModule,
    OxfordPetsDataModule,
    RareClassSampling,
    RasterDataModule,
    SegmentationDataModule,
    StreamingDataModule,
    SyntheticDataModule,
    VOCDataModule,
)
from seglab.errors import CheckpointError, ConfigError, SeglabError
from seglab.inference import Inference
from seglab.losses import CrossEntropyLoss, OhemCrossEntropyLoss, WeightedSum
from seglab.models import SegmentationModule
from seglab.optim import CosineLR, PolyLR, WarmupLR

__version__ = "0.1.0"

__all__ = [
    "ADE20KDataModule",
    "Augment",
    "BatchAugment",
    "BestMetricsTable",
    "BestModelArtifact",
    "CamVidDataModule",
    "ChannelsLast",
    "CheckpointError",
    "CityscapesDataModule",
    "ClassMetricsReport",
    "Compile",
    "ConfigError",
    "CosineLR",
    "CrossEntropyLoss",
    "DataError",
    "ExplainImages",
    "FolderDataModule",
    "FreezeEncoder",
    "Inference",
    "InriaAerialDataModule",
    "NonFiniteLoss",
    "OhemCrossEntropyLoss",
    "OxfordPetsDataModule",
    "PolyLR",
    "PredictionImages",
    "RareClassSampling",
    "RasterDataModule",
    "SeglabError",
    "SegmentationDataModule",
    "SegmentationModule",
    "StreamingDataModule",
    "SyntheticDataModule",
    "Throughput",
    "UnusedParameters",
    "VOCDataModule",
    "ValidateAtEnd",
    "WarmupLR",
    "WeightedSum",
]
