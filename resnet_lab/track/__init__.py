"""Experiment tracking (config group `logger`): Weights & Biases, or nothing."""

from resnet_lab.track.tracker import Tracker, build_tracker

__all__ = ["Tracker", "build_tracker"]
