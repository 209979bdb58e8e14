"""Optimizers and per-step LR schedules (config groups `optimizer`, `scheduler`)."""

from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.optim.schedulers import build_scheduler

__all__ = ["build_optimizer", "build_scheduler"]
