"""`python -m resnet_lab.lr_find [overrides]`: the LR range test, written into its run directory."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from resnet_lab.cli import run_app
from resnet_lab.train.lr_auto import run_range_test


def lr_find(cfg: DictConfig) -> float:
    result = run_range_test(cfg, Path(HydraConfig.get().runtime.output_dir))
    print(f"suggested max_lr: {result.suggestion:.4g} ({result.chosen}; steepest {result.steepest:.4g}, valley {result.valley:.4g})")
    return result.suggestion


def main() -> None:
    run_app(lr_find, config_name="lr_find")


if __name__ == "__main__":
    main()
