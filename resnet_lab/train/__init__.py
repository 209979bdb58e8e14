"""Training (config group `trainer`): the loop, its checkpoints and the run directory's files."""

from resnet_lab.train.loop import DivergedError, EpochMetrics, Trainer
from resnet_lab.train.run import build_trainer, run_training

__all__ = ["DivergedError", "EpochMetrics", "Trainer", "build_trainer", "run_training"]
