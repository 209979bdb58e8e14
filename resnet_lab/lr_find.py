"""`python -m resnet_lab.lr_find [overrides]`: the LR range test, written into its run directory
and, with logger=wandb, recorded as a W&B run of job_type lr_find."""

from __future__ import annotations

from omegaconf import DictConfig

from resnet_lab.cli import run_app
from resnet_lab.config import validate
from resnet_lab.job import JobContext
from resnet_lab.track import build_tracker
from resnet_lab.train.lr_auto import run_range_test


def lr_find(cfg: DictConfig) -> float:
    run, job = validate(cfg), JobContext.from_hydra()
    out_dir = job.run_dir
    tracker = build_tracker(run.logger, job, run.resolved(), job_type="lr_find")
    exit_code = 1
    try:
        result = run_range_test(run, out_dir)
        tracker.log_images({"lr_finder": out_dir / "lr_finder.png"})
        tracker.summarise({"suggestion": result.suggestion, "steepest": result.steepest, "valley": result.valley, "chosen": result.chosen})
        exit_code = 0
    finally:
        tracker.finish(exit_code)
    print(f"suggested max_lr: {result.suggestion:.4g} ({result.chosen}; steepest {result.steepest:.4g}, valley {result.valley:.4g})")
    print(f"use it: python -m resnet_lab.train scheduler.max_lr=auto lr_finder.file={out_dir / 'lr_finder.json'}")
    return result.suggestion


def main() -> None:
    run_app(lr_find, config_name="lr_find")


if __name__ == "__main__":
    main()
