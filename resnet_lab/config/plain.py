"""Configs as plain Python values, typed for what the caller reads."""

from __future__ import annotations

from typing import Any, cast

from omegaconf import OmegaConf


def plain_dict(node: Any, resolve: bool = True, enum_to_str: bool = False) -> dict[str, Any]:
    """A config mapping as a plain dict. OmegaConf.to_container answers with a union of every
    container kind; a mapping node always gives a dict, and saying so here keeps each caller typed."""
    value = OmegaConf.to_container(node, resolve=resolve, enum_to_str=enum_to_str)
    if not isinstance(value, dict):
        raise TypeError(f"expected a config mapping, got {type(value).__name__}")
    return cast(dict[str, Any], value)
