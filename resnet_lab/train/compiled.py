"""torch.compile once per process, reused by every later job of a multirun or sweep.

Compiled code is guarded on the module objects it was traced from, so a fresh model per trial
would compile again (tens of seconds, more than a speedrun trial). The first job's module is
kept; a later job with the same architecture, device and mode copies its freshly initialised
weights into it and runs the already compiled code.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from torch import nn

from resnet_lab.config.schema import CompileMode
from resnet_lab.process_cache import ProcessCache

log = logging.getLogger(__name__)

COMPILED: ProcessCache[tuple[nn.Module, nn.Module]] = ProcessCache("compiled model", capacity=1)  # one architecture at a time


def compile_mode(setting: CompileMode, device: torch.device) -> str | None:
    """The torch.compile mode, or None for eager. `auto` compiles on cuda only: on the CPU the
    compile time outweighs the short runs made there."""
    if setting == CompileMode.auto:
        return "default" if device.type == "cuda" else None
    if setting == CompileMode.off:
        return None
    return CompileMode(setting).value


def uses_cuda_graphs(mode: str | None) -> bool:
    return mode in ("reduce-overhead", "max-autotune")


def compiled_model(model: nn.Module, mode: str, identity: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """(plain module holding `model`'s weights, its compiled form). `identity` describes what
    the compiled code depends on (architecture, device, memory format); equal identities share
    one compiled module."""
    key = json.dumps({**identity, "mode": mode}, sort_keys=True, default=str)
    cached = COMPILED.get(key)
    if cached is None:
        COMPILED.reset()  # release the previous architecture's memory before compiling the next
        # Static shapes: the training and evaluation batch sizes each get their own specialised
        # code (two compiles) instead of one slower shape-generic version.
        cached = COMPILED.put(key, (model, torch.compile(model, mode=mode, dynamic=False)))
        log.info("torch.compile (mode %s): compiling on the first steps; later jobs in this process reuse it", mode)
        return cached
    plain, compiled = cached
    with torch.no_grad():
        plain.load_state_dict(model.state_dict())
    plain.train()
    for param, fresh in zip(plain.parameters(), model.parameters()):
        param.requires_grad_(fresh.requires_grad)
        param.grad = None
    return plain, compiled
