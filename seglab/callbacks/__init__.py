from seglab.callbacks.explain import ExplainImages
from seglab.callbacks.images import PredictionImages
from seglab.callbacks.summary import BestMetricsTable
from seglab.callbacks.throughput import Throughput
from seglab.callbacks.wandb import BestModelArtifact, ClassMetricsReport

__all__ = [
    "BestMetricsTable",
    "BestModelArtifact",
    "ClassMetricsReport",
    "ExplainImages",
    "PredictionImages",
    "Throughput",
]
