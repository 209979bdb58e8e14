"""What resnet_lab adds to a torch param group, in one place.

torch param groups are plain dicts that optimizers pass through untouched. Two of our own keys
ride in them, so that the schedules, the training loop and the LR range test can each work out a
group's own LR and decay without knowing how the optimizer was configured. Only this module
names those keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_LR_SCALE = "lr_scale"
_DECOUPLED_DECAY = "sgd_decoupled_decay"


@dataclass(frozen=True)
class GroupSpec:
    """`lr_scale`: the group's LR is scheduler.max_lr times it (norm_bias_lr_scale, decoupled
    SGD's unit conversion). `decoupled_decay`: with decoupled SGD, the decay per step at the peak
    LR divided by `lr_scale` (torch's coefficient is it over the LR); None otherwise."""

    lr_scale: float = 1.0
    decoupled_decay: float | None = None

    @classmethod
    def of(cls, group: dict[str, Any]) -> "GroupSpec":
        return cls(group.get(_LR_SCALE, 1.0), group.get(_DECOUPLED_DECAY))

    def apply_to(self, group: dict[str, Any]) -> dict[str, Any]:
        group[_LR_SCALE] = self.lr_scale
        if self.decoupled_decay is None:
            group.pop(_DECOUPLED_DECAY, None)
        else:
            group[_DECOUPLED_DECAY] = self.decoupled_decay
        return group
