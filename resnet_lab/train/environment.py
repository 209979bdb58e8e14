"""Device, precision and determinism: decided once per job from the `trainer` group."""

from __future__ import annotations

import os
import random
import subprocess
from contextlib import nullcontext
from pathlib import Path
from typing import ContextManager

import numpy as np
import torch

from resnet_lab.config.schema import Device, Precision, TrainerConfig
from resnet_lab.errors import ConfigError


def select_device(cfg: TrainerConfig) -> torch.device:
    if cfg.device == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("trainer.device='cuda' is not allowed here: no CUDA device is available; use trainer.device=auto or cpu")
    if cfg.device == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(Device(cfg.device).value)


def select_precision(cfg: TrainerConfig, device: torch.device) -> str:
    if cfg.precision == Precision.auto:
        return "bf16" if device.type == "cuda" else "fp32"
    if cfg.precision == Precision.fp16 and device.type != "cuda":
        raise ConfigError("trainer.precision='fp16' is not allowed on the cpu: use bf16 or fp32 there (fp16 with a grad scaler is for cuda)")
    return Precision(cfg.precision).value


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The autocast of a precision chosen by `select_precision`: training, evaluation and
    prediction compute in the same one, so their logits agree."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds every RNG that touches a run; deterministic mode also pins the kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
