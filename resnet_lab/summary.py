"""`python -m resnet_lab.summary [model overrides]`: the layer table of the configured model.

Prints torchinfo's table and the seed's flat table (`Conv2d-1 ... Linear-33`, containers after
their layers, as torchsummary numbers them), which tests pin to the published 6,573,130-parameter
network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torchinfo
from omegaconf import DictConfig
from torch import nn

from resnet_lab.cli import run_app
from resnet_lab.config import validate
from resnet_lab.config.targets import build
from resnet_lab.models import ResidualBlock


@dataclass(frozen=True)
class LayerRow:
    name: str
    output_shape: tuple[int, ...]
    params: int


def model_from_config(cfg: DictConfig) -> nn.Module:
    validate(cfg)
    return build(cfg.model, num_classes=cfg.model.num_classes or 10)


def layer_table(model: nn.Module, image_size: int = 32) -> tuple[str, list[LayerRow], int]:
    """(torchinfo's printed table, the seed-style rows, total parameters)."""
    stats = torchinfo.summary(model, input_size=(1, 3, image_size, image_size), depth=4, col_names=("output_size", "num_params"), verbose=0)
    ordered: list[Any] = []
    pending: list[Any] = []
    for info in stats.summary_list:
        while pending and pending[-1].depth >= info.depth:
            ordered.append(pending.pop())
        if isinstance(info.module, ResidualBlock):
            pending.append(info)
        elif info.is_leaf_layer:
            ordered.append(info)
    ordered += reversed(pending)
    rows = [
        LayerRow(
            f"{info.class_name}-{index}",
            tuple(info.output_size[1:]),
            info.num_params if info.is_leaf_layer else sum(p.numel() for p in info.module.parameters()),
        )
        for index, info in enumerate(ordered, start=1)
    ]
    return str(stats), rows, stats.total_params


def format_rows(rows: list[LayerRow], total: int) -> str:
    lines = [f"{'Layer (type)':<22}{'Output Shape':<22}{'Param #':>12}", "-" * 56]
    lines += [f"{row.name:<22}{str(list(row.output_shape)):<22}{row.params:>12,}" for row in rows]
    lines += ["-" * 56, f"Total params: {total:,}"]
    return "\n".join(lines)


def show(cfg: DictConfig) -> None:
    table, rows, total = layer_table(model_from_config(cfg), cfg.data.image_size)
    print(table)
    print(format_rows(rows, total))


def main() -> None:
    run_app(show, config_name="train")


if __name__ == "__main__":
    main()
