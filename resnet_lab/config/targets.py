"""The only code a config may name as `_target_`: ours and torch's optimizers.

Hydra 1.4 instantiates config-named targets only from an execution whitelist given by trusted
code; anything else in a `_target_` is refused with a one-line error.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable

from hydra.utils import instantiate

TRUSTED_TARGETS = ("resnet_lab.*", "torch.optim.*")


def build(config: Any, **kwargs: Any) -> Any:
    return instantiate(config, _execution_whitelist_=TRUSTED_TARGETS, **kwargs)


def build_typed(config: Any, leave_out: Iterable[str] = (), **kwargs: Any) -> Any:
    """Instantiate a validated group (its typed schema object): its fields are the factory's
    arguments, less `leave_out`, the settings the caller applies itself."""
    skipped = set(leave_out)
    return build({f.name: getattr(config, f.name) for f in fields(config) if f.name not in skipped}, **kwargs)
