from seglab.callbacks.explain import ExplainImages
from seglab.callbacks.summary import BestMetricsTable
from seglab.callbacks.throughput import Throughput

__all__ = [
    "BestMetricsTable",
    "ExplainImages",
    "Throughput",
]
