"""An exponential moving average of the weights (and BatchNorm statistics), for evaluation, or,
as Lookahead, the slow weights the live ones are pulled back to.

torch.optim.swa_utils.AveragedModel reads a device counter on the host in every update (a sync
per update), which the training loop must not do; this keeps the average with two foreach
kernels and no host reads.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """Bound to one model: its tensors are collected once, so an update in the training loop is
    the foreach kernels and nothing else (the model's tensors are only ever updated in place)."""

    def __init__(self, model: nn.Module, decay: float, every: int, lookahead: bool = False) -> None:
        self.decay = decay
        self.every = every
        self.lookahead = lookahead
        self.live = [t.detach() for t in self._live(model)]
        self.tensors = [t.clone() for t in self.live]

    @staticmethod
    def _live(model: nn.Module) -> list[torch.Tensor]:
        """Floating-point parameters and buffers (BatchNorm's batch counter stays as it is)."""
        return [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """average <- decay^every * average + (1 - decay^every) * live: `every` steps' worth of
        decay at once, so the average's time scale does not depend on how often it is updated.
        As Lookahead the live weights then restart from the average: the fast weights explore for
        `every` steps and only the averaged direction is kept (airbench's lookahead, also sync-free)."""
        torch._foreach_lerp_(self.tensors, self.live, 1.0 - self.decay**self.every)
        if self.lookahead:
            torch._foreach_copy_(self.live, self.tensors)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchanges the model's weights with the average (twice restores both)."""
        held = [t.clone() for t in self.live]
        torch._foreach_copy_(self.live, self.tensors)
        torch._foreach_copy_(self.tensors, held)

    def state_dict(self) -> dict:
        return {"tensors": [t.cpu() for t in self.tensors], "decay": self.decay, "every": self.every, "lookahead": self.lookahead}

    def load_state_dict(self, state: dict) -> None:
        for target, saved in zip(self.tensors, state["tensors"]):
            target.copy_(saved)
