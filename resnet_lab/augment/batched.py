"""Whole-batch augmentations: one kernel launch per op per batch, no per-image Python.

Each op draws its randomness from the generator it is given (the loader's, on the data's
device), so the same seed gives the same batch and a checkpointed generator state resumes it.
Under ddp each rank augments only its rows of a batch but draws the randomness for the whole
batch (`Rows`): the generators of all ranks stay in step, and a sharded batch is augmented
exactly as the unsharded one would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch
import torch.nn.functional as F

from resnet_lab.config.schema import AugmentationConfig, PadMode


@dataclass(frozen=True)
class Rows:
    """The rows [start, stop) of a batch of `total` images that this process holds."""

    start: int
    stop: int
    total: int


def _batch_size(images: torch.Tensor, rows: Optional[Rows]) -> int:
    return images.shape[0] if rows is None else rows.total


def _mine(drawn: torch.Tensor, rows: Optional[Rows]) -> torch.Tensor:
    return drawn if rows is None else drawn[rows.start : rows.stop]


def mirror(images: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Each image flipped left-right where its entry of the boolean vector `where` is true."""
    return torch.where(where.view(-1, 1, 1, 1), images.flip(3), images)


class Augment(Protocol):
    def __call__(self, images: torch.Tensor, generator: torch.Generator, rows: Optional[Rows] = None) -> torch.Tensor: ...


class RandomCrop:
    """Pad by `padding` on every side, then crop a random window of the original size per image."""

    def __init__(self, padding: int, mode: str = "reflect") -> None:
        self.padding = padding
        self.mode = "constant" if mode == "zeros" else mode

    def __call__(self, images: torch.Tensor, generator: torch.Generator, rows: Optional[Rows] = None) -> torch.Tensor:
        n, _, h, w = images.shape
        p, total = self.padding, _batch_size(images, rows)
        padded = F.pad(images, (p, p, p, p), mode=self.mode)
        dy = _mine(torch.randint(0, 2 * p + 1, (total, 1, 1), device=images.device, generator=generator), rows)
        dx = _mine(torch.randint(0, 2 * p + 1, (total, 1, 1), device=images.device, generator=generator), rows)
        rows = (dy + torch.arange(h, device=images.device).view(1, h, 1)).expand(n, h, w)
        cols = (dx + torch.arange(w, device=images.device).view(1, 1, w)).expand(n, h, w)
        flat = rows * padded.shape[-1] + cols
        index = flat.unsqueeze(1).expand(-1, images.shape[1], -1, -1).reshape(n, images.shape[1], h * w)
        return padded.flatten(2).gather(2, index).view_as(images)


class HorizontalFlip:
    """Mirror each image left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, images: torch.Tensor, generator: torch.Generator, rows: Optional[Rows] = None) -> torch.Tensor:
        flip = _mine(torch.rand(_batch_size(images, rows), device=images.device, generator=generator), rows) < self.p
        return mirror(images, flip)


class Cutout:
    """Zero one `size` x `size` square per image (with probability `p`), centre uniform, clipped
    at the border as in DeVries & Taylor; on normalised images zero is the mean colour."""

    def __init__(self, size: int, p: float = 1.0) -> None:
        self.size = size
        self.p = p

    def __call__(self, images: torch.Tensor, generator: torch.Generator, rows: Optional[Rows] = None) -> torch.Tensor:
        _, _, h, w = images.shape
        device, total = images.device, _batch_size(images, rows)
        cy = _mine(torch.randint(0, h, (total, 1, 1), device=device, generator=generator), rows)
        cx = _mine(torch.randint(0, w, (total, 1, 1), device=device, generator=generator), rows)
        apply = _mine(torch.rand(total, 1, 1, device=device, generator=generator), rows) < self.p
        top, left = cy - self.size // 2, cx - self.size // 2
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        hole = (ys >= top) & (ys < top + self.size) & (xs >= left) & (xs < left + self.size) & apply
        return images.masked_fill(hole.unsqueeze(1), 0.0)


class Compose:
    def __init__(self, ops: list[Augment]) -> None:
        self.ops = ops

    def __call__(self, images: torch.Tensor, generator: torch.Generator, rows: Optional[Rows] = None) -> torch.Tensor:
        for op in self.ops:
            images = op(images, generator, rows)
        return images


def build_augment(cfg: AugmentationConfig) -> Augment | None:
    """crop -> flip -> cutout, skipping ops that are switched off; None when nothing is on."""
    ops: list[Augment] = []
    if cfg.crop_padding > 0:
        ops.append(RandomCrop(cfg.crop_padding, PadMode(cfg.padding_mode).value))
    if cfg.flip_p > 0 and not cfg.alternate_flip:  # alternating flips need sample identities: the loader does them
        ops.append(HorizontalFlip(cfg.flip_p))
    if cfg.cutout_size > 0 and cfg.cutout_p > 0:
        ops.append(Cutout(cfg.cutout_size, cfg.cutout_p))
    return Compose(ops) if ops else None
