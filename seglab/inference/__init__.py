"""Inference beyond one forward pass: sliding window, test-time augmentation, prediction files,
export."""

from seglab.inference.predict import Inference, predict_logits
from seglab.inference.sliding_window import sliding_window
from seglab.inference.tta import tta_logits, tta_passes

__all__ = ["Inference", "predict_logits", "sliding_window", "tta_logits", "tta_passes"]
