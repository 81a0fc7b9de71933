"""Explaining predictions: Grad-CAM on any layer and input-gradient saliency, for one class."""

from seglab.explain.cam import class_target, explain_image, grad_cam, input_saliency, overlay

__all__ = ["class_target", "explain_image", "grad_cam", "input_saliency", "overlay"]
