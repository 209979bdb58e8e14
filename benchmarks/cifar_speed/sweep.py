"""An Optuna sweep of speedrun trials in one process against one trial alone."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.cifar_speed.common import (
    Scale,
    framework_env,
    speedrun_settings,
)
from resnet_lab.data.datasets import READ_MESSAGE


def run_sweep(root: Path, scale: Scale, work: Path) -> dict[str, Any]:
    """`python -m resnet_lab.train -m hparams_search=optuna experiment=speedrun` with n trials
    in one process, against the same command for one trial; recompiles counted from TORCH_LOGS,
    data reads from the job log."""
    base = [sys.executable, "-m", "resnet_lab.train", "-m", "hparams_search=optuna", "hparams_search.max_lr_bounds=[0.2,0.8]", *speedrun_settings(root, scale)]
    env = framework_env(TORCH_LOGS="recompiles")

    def sweep(trials: int, name: str) -> tuple[float, str, Path]:
        folder = work / name
        command = [*base, f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={folder}", f"hydra.sweeper.storage=sqlite:///{work / name}.db"]
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"sweep failed: {result.stderr[-2000:]}")
        return seconds, result.stderr + result.stdout, folder

    one_s, one_log, _ = sweep(1, "one")
    total_s, log, folder = sweep(scale.sweep_trials, "many")
    trial_times = [json.loads(p.read_text())["wall_time_s"] for p in sorted(folder.glob("*/summary.json"))]
    return {
        "trials": scale.sweep_trials,
        "total_s": total_s,
        "one_trial_s": one_s,
        "ratio": total_s / (scale.sweep_trials * one_s),
        # The first trial compiles training and evaluation (a grad-mode recompile): what the
        # other trials add on top of one trial alone is what matters.
        "trial_wall_s": trial_times,
        "recompiles": log.count("Recompiling function") - one_log.count("Recompiling function"),
        "data_reads": log.count(READ_MESSAGE.split("%s")[0]),  # 1: every later trial reuses the first one's device tensors
        "ratio_to_steady_trials": total_s / (scale.sweep_trials * statistics.median(trial_times[1:] or trial_times)),
    }
