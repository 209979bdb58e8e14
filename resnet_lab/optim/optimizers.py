"""Instantiate the configured torch optimizer over the model's parameter groups, each carrying
its `GroupSpec` (its LR scale and, with decoupled SGD, its decay per step) for the schedules,
the loop and the LR range test."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from resnet_lab.config.schema import AdamConfig, OptimizerConfig, OptimizerImplementation, SGDConfig
from resnet_lab.config.targets import build_typed
from resnet_lab.optim.group_spec import GroupSpec


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, norm_bias_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """One group, or two when the 1-D tensors (BatchNorm weights and biases, other biases) are
    treated apart: exempt from decay (scale-invariant layers gain nothing from it), or trained
    at `norm_bias_lr_scale` times the LR with their decay divided by as much, so that their
    decay per step is unchanged (airbench's bias scaler)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias and norm_bias_lr_scale == 1.0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    exempt = [p for p in params if p.ndim <= 1]
    exempt_decay = weight_decay / norm_bias_lr_scale if decay_norm_and_bias else 0.0
    return [{"params": decay, "weight_decay": weight_decay}, GroupSpec(lr_scale=norm_bias_lr_scale).apply_to({"params": exempt, "weight_decay": exempt_decay})]


def implementation_options(implementation: OptimizerImplementation, model: nn.Module) -> dict[str, bool]:
    """Keyword arguments that pick torch's optimizer kernels. `auto` fuses the whole step into a
    few kernels on cuda (fewer launches per step); on the CPU torch's own default stays."""
    if implementation == OptimizerImplementation.auto:
        on_cuda = all(p.device.type == "cuda" for p in model.parameters())
        return {"fused": True} if on_cuda else {}
    return {
        OptimizerImplementation.fused: {"fused": True},
        OptimizerImplementation.foreach: {"foreach": True},
        OptimizerImplementation.for_loop: {"foreach": False},
    }[implementation]


def decoupled_lr_scale(momentum: float, batch_size: int) -> float:
    """torch SGD's LR (mean loss over a batch) per unit of airbench's LR, which counts per 1,024
    examples and divides out the momentum's gain (1 + 1/(1 - momentum), airbench's count): with
    it, changing the batch size or the momentum does not change what a given LR does."""
    return batch_size / (1024 * (1 + 1 / (1 - momentum)))


# Settings of the optimizer group that this module applies (or, the two windows, a sweep
# searches); the others are the torch optimizer's.
GROUPING = ("implementation", "decay_norm_and_bias", "norm_bias_lr_scale", "decoupled", "weight_decay_window", "lr_window")


def build_optimizer(cfg: OptimizerConfig, model: nn.Module, lr: float, batch_size: int) -> torch.optim.Optimizer:
    """`lr` is the schedule's peak (scheduler.max_lr); the schedule then drives it per step.
    `batch_size` (the global one) converts decoupled SGD's units."""
    torch_options: dict[str, Any] = implementation_options(cfg.implementation, model)
    if isinstance(cfg, AdamConfig):
        torch_options["betas"] = tuple(cfg.betas)
    factory = build_typed(cfg, leave_out=GROUPING, **torch_options)
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, cfg.norm_bias_lr_scale)
    for group in groups:
        spec = GroupSpec.of(group)
        if isinstance(cfg, SGDConfig) and cfg.decoupled:
            spec = GroupSpec(spec.lr_scale * decoupled_lr_scale(cfg.momentum, batch_size), decoupled_decay=group["weight_decay"])
            group["weight_decay"] = group["weight_decay"] / lr
        spec.apply_to(group)
        group["lr"] = lr * spec.lr_scale
    return factory(groups, lr=lr)
