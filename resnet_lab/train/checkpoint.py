"""Checkpoints: atomic writes, and loads that name the damaged file instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import torch

from resnet_lab.config.errors import ConfigError
from resnet_lab.files import atomic_write

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_write(path) as handle:
        torch.save(state, handle)


def resolve_checkpoint(location: str | Path) -> Path:
    """A checkpoint file, or a run directory whose checkpoints/last.pt is meant."""
    path = Path(location).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; pass a run directory with checkpoints/{LAST} or a .pt file")
    return path


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ConfigError(
            f"checkpoint {path} is damaged or not a checkpoint ({type(error).__name__}: {error}); "
            "trainer.resume_fallback_best=true resumes from best.pt instead"
        ) from error
    if not isinstance(state, dict) or "trainer" not in state:
        raise ConfigError(f"checkpoint {path} is not a resnet_lab checkpoint (no trainer state)")
    return state
