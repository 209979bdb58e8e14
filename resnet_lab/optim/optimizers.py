"""Instantiate the configured torch optimizer over the model's parameter groups."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from resnet_lab.config.schema import OptimizerImplementation
from resnet_lab.config.targets import build


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict[str, Any]]:
    """Two groups when BatchNorm weights and biases are exempt from decay (a 1-D tensor is one
    of those), as scale-invariant layers gain nothing from decaying them; otherwise one."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    exempt = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


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


def build_optimizer(cfg: DictConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """`lr` is the schedule's peak (scheduler.max_lr); the schedule then drives it per step."""
    options = OmegaConf.to_container(cfg, resolve=True)
    implementation = OptimizerImplementation(options.pop("implementation", OptimizerImplementation.auto))
    options.update(implementation_options(implementation, model))
    decay_norm_and_bias = bool(options.pop("decay_norm_and_bias"))
    weight_decay = float(options["weight_decay"])
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    factory = build(options)
    return factory(parameter_groups(model, weight_decay, decay_norm_and_bias), lr=lr)
