"""`python -m resnet_lab.train [overrides]`: one run, or a multirun / sweep with `-m`."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from resnet_lab.cli import run_app
from resnet_lab.train.run import run_training


def train(cfg: DictConfig) -> float:
    return run_training(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    run_app(train, config_name="train")


if __name__ == "__main__":
    main()
