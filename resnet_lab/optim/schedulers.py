"""Per-step LR schedules behind one signature, `factory(optimizer, steps_per_epoch, epochs)`.

All of them are stepped once per batch and peak at `max_lr`, so `scheduler.max_lr=...` sets the
peak LR whichever schedule is chosen.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from resnet_lab.config.schema import AnnealStrategy, CosineConfig, OneCycleConfig, SchedulerConfig
from resnet_lab.config.targets import build_typed
from resnet_lab.errors import ConfigError
from resnet_lab.optim.group_spec import GroupSpec


def one_cycle(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: int,
    max_lr: float,
    pct_start: float,
    div_factor: float,
    final_div_factor: float,
    anneal_strategy: AnnealStrategy | str,
    three_phase: bool,
) -> LRScheduler:
    total_steps = steps_per_epoch * epochs
    if pct_start * total_steps < 2 or (1 - pct_start) * total_steps < 2:
        raise ConfigError(
            f"scheduler.pct_start={pct_start} is not allowed with only {total_steps} training steps: each one-cycle phase needs >= 2 steps; "
            "train longer, use a smaller data.batch_size, or choose another pct_start"
        )
    return OneCycleLR(
        optimizer,
        max_lr=[max_lr * GroupSpec.of(group).lr_scale for group in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=AnnealStrategy(anneal_strategy).value,
        three_phase=three_phase,
    )


def cosine(optimizer: Optimizer, steps_per_epoch: int, epochs: int, max_lr: float, warmup_epochs: float, min_lr: float) -> LRScheduler:
    total = steps_per_epoch * epochs
    warmup = round(warmup_epochs * steps_per_epoch)
    floor = min_lr / max_lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    _set_lr(optimizer, max_lr)
    return LambdaLR(optimizer, factor)


def step(optimizer: Optimizer, steps_per_epoch: int, epochs: int, max_lr: float, step_epochs: int, gamma: float) -> LRScheduler:
    _set_lr(optimizer, max_lr)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=gamma)


def constant(optimizer: Optimizer, steps_per_epoch: int, epochs: int, max_lr: float) -> LRScheduler:
    _set_lr(optimizer, max_lr)
    return LambdaLR(optimizer, lambda _: 1.0)


def _set_lr(optimizer: Optimizer, lr: float) -> None:
    """The peak LR on every group, times the group's `lr_scale` (optimizer.norm_bias_lr_scale)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr * GroupSpec.of(group).lr_scale


def peak_epoch(cfg: SchedulerConfig, epochs: int) -> int:
    """The epoch by whose end the schedule has reached max_lr. Before it, a trial with a higher
    peak is still climbing and scores below one that has settled on a lower peak, whatever it
    will end at, so a pruner that compares epochs must not judge there."""
    if isinstance(cfg, OneCycleConfig):
        return math.ceil(cfg.pct_start * epochs)
    if isinstance(cfg, CosineConfig):
        return math.ceil(cfg.warmup_epochs)
    return 0


def build_scheduler(cfg: SchedulerConfig, optimizer: Optimizer, steps_per_epoch: int, epochs: int, max_lr: float) -> LRScheduler:
    """`max_lr` is the peak as a number: the config's, or the one the LR range test chose for
    scheduler.max_lr=auto."""
    return build_typed(cfg, max_lr=max_lr)(optimizer, steps_per_epoch=steps_per_epoch, epochs=epochs)
