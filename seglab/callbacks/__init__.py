from seglab.callbacks.checkpointing import AtomicCheckpointIO, ResumeState
from seglab.callbacks.distributed import UnusedParameters
from seglab.callbacks.explain import ExplainImages
from seglab.callbacks.freezing import FreezeEncoder
from seglab.callbacks.images import PredictionImages
from seglab.callbacks.nonfinite import NonFiniteLoss
from seglab.callbacks.report import ClassMetricsReport
from seglab.callbacks.schedule import ValidateAtEnd
from seglab.callbacks.speed import ChannelsLast, Compile
from seglab.callbacks.summary import BestMetricsTable
from seglab.callbacks.throughput import Throughput
from seglab.callbacks.wandb import BestModelArtifact

__all__ = [
    "AtomicCheckpointIO",
    "BestMetricsTable",
    "BestModelArtifact",
    "ChannelsLast",
    "ClassMetricsReport",
    "Compile",
    "ExplainImages",
    "FreezeEncoder",
    "NonFiniteLoss",
    "PredictionImages",
    "ResumeState",
    "Throughput",
    "UnusedParameters",
    "ValidateAtEnd",
]
