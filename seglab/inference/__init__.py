"""Inference beyond one forward pass: sliding window, test-time augmentation, prediction files,
streamed prediction of images larger than memory, export."""

from seglab.inference.predict import Inference, predict_logits
from seglab.inference.sliding_window import sliding_window
from seglab.inference.streaming import StreamResult, stream_predict
from seglab.inference.tta import tta_logits, tta_passes

__all__ = [
    "Inference",
    "StreamResult",
    "predict_logits",
    "sliding_window",
    "stream_predict",
    "tta_logits",
    "tta_passes",
]
