"""The only code a config may name as `_target_`: ours and torch's optimizers.

Hydra 1.4 instantiates config-named targets only from an execution whitelist given by trusted
code; anything else in a `_target_` is refused with a one-line error.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate

TRUSTED_TARGETS = ("resnet_lab.*", "torch.optim.*")


def build(config: Any, **kwargs: Any) -> Any:
    return instantiate(config, _execution_whitelist_=TRUSTED_TARGETS, **kwargs)
