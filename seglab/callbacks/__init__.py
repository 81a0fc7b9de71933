from seglab.callbacks.explain import ExplainImages
from seglab.callbacks.summary import BestMetricsTable

__all__ = ["BestMetricsTable", "ExplainImages"]
