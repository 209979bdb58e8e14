"""Explanations after training (config group `explain`): GradCAM of misclassified images."""

from resnet_lab.explain.gradcam import GalleryCell, explain_misclassified

__all__ = ["GalleryCell", "explain_misclassified"]
