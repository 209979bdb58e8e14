"""Test-time augmentation: the final evaluation averages the model's logits over a few views
of each image, the same ones training augmented with (mirror, small shifts). Each view is a
separate forward pass of the batch's own shape, so compiled code is reused as it is."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from resnet_lab.config.schema import TTAMode

Model = Callable[[torch.Tensor], torch.Tensor]


def _like(view: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The view in the batch's memory layout: compiled code is specialised on it."""
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    return view.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _with_mirror(model: Model, images: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    return 0.5 * (model(_like(images, layout)).float() + model(_like(images.flip(-1), layout)).float())


def tta_logits(model: Model, images: torch.Tensor, mode: TTAMode) -> torch.Tensor:
    """flip: the image and its mirror. flip_translate: also both shifted one pixel up-left and
    down-right (reflect-padded), weighted 1/2 for the unshifted pair and 1/4 per shifted pair."""
    mode = TTAMode(mode)
    if mode == TTAMode.none:
        return model(images).float()
    if mode == TTAMode.flip:
        return _with_mirror(model, images, images)
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :-2, :-2], padded[..., 2:, 2:]
    shifted = _with_mirror(model, up_left, images) + _with_mirror(model, down_right, images)
    return 0.5 * _with_mirror(model, images, images) + 0.25 * shifted
