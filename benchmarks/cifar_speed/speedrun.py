"""The framework's own path: experiment=speedrun over several seeds."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks.cifar_speed.common import (
    Scale,
    compose_run,
    mean_std,
    peak_memory,
    reset_peak,
    timed,
)
from resnet_lab.config import validate


def run_speedrun(root: Path, scale: Scale) -> dict[str, Any]:
    """The framework's own path (components, Trainer, compiled model from the process cache),
    one warm-up run that pays for compilation, then one timed run per seed."""
    from resnet_lab.train.run import build_trainer

    def one(seed: int, *extra: str) -> tuple[dict[str, Any], Any]:
        cfg = compose_run(root, scale, f"trainer.seed={seed}", *extra)
        trainer, _, _ = build_trainer(validate(cfg))
        reset_peak(trainer.device)
        history, seconds = timed(trainer.device, lambda: trainer.fit(cfg.trainer.epochs))
        epochs = [m.epoch_time_s for m in history]
        return {
            "seed": seed,
            "accuracy": history[-1].objective,
            "plain_accuracy": history[-1].eval_acc,
            "time_s": seconds,
            "epoch_s": statistics.median(epochs),
            "peak_memory_gib": peak_memory(trainer.device),
        }, trainer

    _, warmup_s = timed(torch.device("cpu"), lambda: one(0, "trainer.epochs=2"))
    runs, trainer = [], None
    for seed in range(scale.seeds):
        result, trainer = one(seed)
        runs.append(result)
        print(f"speedrun seed {seed}: {100 * result['accuracy']:.2f}% in {result['time_s']:.2f} s", flush=True)
    return {
        "device": str(trainer.device),
        "compile_mode": trainer.compile_mode,
        "warmup_s": warmup_s,
        "accuracy": mean_std([r["accuracy"] for r in runs]),
        "time_s": mean_std([r["time_s"] for r in runs]),
        "epoch_s": statistics.median(r["epoch_s"] for r in runs),
        "peak_memory_gib": max((r["peak_memory_gib"] or 0) for r in runs) or None,
        "runs": runs,
    }
