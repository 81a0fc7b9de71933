from seglab.callbacks.summary import BestMetricsTable

__all__ = ["BestMetricsTable"]
