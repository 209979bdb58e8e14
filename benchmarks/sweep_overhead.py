"""What the sweep loop itself costs: resnet_lab's sweeper against hydra-optuna-sweeper on the same
trivial Hydra app, and the idle time between real trials.

    python -m benchmarks.sweep_overhead [--runs 5] [--trials 30] [--out benchmarks/results]

1. A Hydra app returning a float at once, swept with `n_trials` trials one at a time (TPE) by
   each sweeper, as whole processes, alternating, `--runs` times each, on two storages: a SQLite
   file per sweeper (the issue's setting; resnet_lab writes it ahead-logged, the plugin as
   SQLite's default does, with an fsync per commit) and memory (the loop alone, no disk). Per
   storage: the median wall time, the ratio (target <= 1.05; resnet_lab without its report's
   plots, as the plugin draws none, and with them), and the same with one trial (the fixed
   cost at start and end). Per trial, the study's own stamps: the median gap from one trial's
   end to the next one's start inside a process.
2. A resnet_lab sweep of `--real-trials` tiny training trials (1/8-width net, synthetic images,
   one epoch, CPU) on one worker: the gap from each trial's end to the next one's start (target
   <= 0.2 s).

Results go to <out>/<date>-cpu-sweep_overhead.json with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = """
import hydra
from hydra.core.plugins import Plugins

from resnet_lab.sweep.optuna_sweeper import ResumableOptunaSweeper

Plugins.instance().register(ResumableOptunaSweeper)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg) -> float:
    return (cfg.x - 2) ** 2 + cfg.y


if __name__ == "__main__":
    main()
"""
CONFIG = """
defaults:
  - override hydra/sweeper: optuna
  - _self_
x: 0.0
y: 0
hydra:
  sweeper:
    direction: minimize
    n_jobs: 1
    sampler:
      seed: 1
    params:
      x: interval(-1, 5)
      y: choice(0, 1)
"""
OURS = "hydra.sweeper._target_=resnet_lab.sweep.optuna_sweeper.ResumableOptunaSweeper"
# The plugin draws no plots; resnet_lab's report draws them at the end unless told not to.
SWEEPERS = {
    "resnet_lab": [OURS, "+hydra.sweeper.plots=false"],
    "plugin": ["hydra.sweeper._target_=hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"],
    "resnet_lab_with_plots": [OURS],
}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}


def timed_sweep(app: Path, sweeper: str, trials: int, index: int, on_disk: bool) -> tuple[float, list[float], float | None]:
    """(wall seconds of the whole process, gaps between its consecutive trials, seconds per trial
    inside the loop: first trial's start to last trial's end, over the trials). An in-memory
    study ends with its process: its trials' stamps are not read (no gaps, None)."""
    import optuna

    name = f"{sweeper}-{trials}-{index}-{'sqlite' if on_disk else 'memory'}"
    # A file per sweeper: resnet_lab turns a SQLite file it opens to write-ahead logging, which
    # would then speed up the plugin's commits too, and each sweeper is measured as it runs alone.
    storage = f"sqlite:///{app / sweeper}.db" if on_disk else "null"
    command = [sys.executable, "app.py", "-m", *SWEEPERS[sweeper], f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.study_name={name}"]
    command += [f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir=sweeps/{name}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=app, env=env(), capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{sweeper} failed: {done.stderr[-2000:]}")
    if not on_disk:
        return wall, [], None
    study = optuna.load_study(study_name=name, storage=storage)
    span = (max(t.datetime_complete for t in study.trials) - min(t.datetime_start for t in study.trials)).total_seconds()
    return wall, trial_gaps(study.trials), span / len(study.trials)


def trial_gaps(trials: list) -> list[float]:
    ordered = sorted((t for t in trials if t.datetime_start and t.datetime_complete), key=lambda t: t.datetime_start)
    return [(after.datetime_start - before.datetime_complete).total_seconds() for before, after in zip(ordered, ordered[1:])]


def trivial_app(runs: int, trials: int, scratch: Path) -> dict:
    app = scratch / "app"
    (app / "conf").mkdir(parents=True)
    (app / "app.py").write_text(APP)
    (app / "conf" / "config.yaml").write_text(CONFIG)
    results: dict[str, dict] = {}
    for storage, on_disk in (("sqlite", True), ("memory", False)):
        for size in (trials, 1):
            walls: dict[str, list[float]] = {name: [] for name in SWEEPERS}
            gaps: dict[str, list[float]] = {name: [] for name in SWEEPERS}
            per_trial: dict[str, list[float]] = {name: [] for name in SWEEPERS}
            for index in range(runs):
                for name in SWEEPERS:  # alternating, so that machine noise hits all alike
                    wall, between, each = timed_sweep(app, name, size, index, on_disk)
                    walls[name].append(wall)
                    gaps[name] += between
                    per_trial[name] += [] if each is None else [each]
            row: dict = {
                name: {
                    "median_wall_s": round(statistics.median(walls[name]), 3),
                    "min_wall_s": round(min(walls[name]), 3),
                    "max_wall_s": round(max(walls[name]), 3),
                    "median_gap_between_trials_s": round(statistics.median(gaps[name]), 4) if gaps[name] else None,
                    "median_loop_s_per_trial": round(statistics.median(per_trial[name]), 4) if per_trial[name] else None,
                }
                for name in SWEEPERS
            }
            ours, theirs, with_plots = (row[n]["median_wall_s"] for n in SWEEPERS)
            row["ratio"] = round(ours / theirs, 3)
            row["ratio_with_plots"] = round(with_plots / theirs, 3)
            if on_disk:
                row["loop_ratio_per_trial"] = round(row["resnet_lab"]["median_loop_s_per_trial"] / row["plugin"]["median_loop_s_per_trial"], 3)
            results[f"{storage}_{size}_trials"] = row
    return results


def real_trials(count: int, scratch: Path) -> dict:
    """A resnet_lab sweep of tiny training trials on one worker: the idle time between trials."""
    import numpy as np
    import optuna
    from PIL import Image

    root = scratch / "images"
    for split, per_class in (("train", 24), ("test", 8)):
        for label in range(3):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            rng = np.random.default_rng(label)
            for index in range(per_class):
                pixels = np.clip(rng.normal(80 * label, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    settings = [
        "data=image_folder",
        f"data.root={root}",
        "model.width_multiplier=0.125",
        "trainer.device=cpu",
        "trainer.progress=false",
        "data.batch_size=8",
        "logger=none",
        "explain=none",
        "trainer.epochs=1",
        "hparams_search=optuna",
        "hparams_search.max_lr_bounds=[0.01,0.1]",
        f"hydra.sweeper.n_trials={count}",
        f"hydra.sweeper.storage=sqlite:///{scratch / 'real.db'}",
        f"hydra.sweep.dir={scratch / 'real'}",
    ]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "resnet_lab.train", "-m", *settings], cwd=scratch, env=env(), capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the real sweep failed: {done.stderr[-2000:]}")
    trials = optuna.load_study(study_name="resnet_lab", storage=f"sqlite:///{scratch / 'real.db'}").trials
    gaps = trial_gaps(trials)
    return {
        "trials": count,
        "wall_s": round(wall, 2),
        "trial_s": [round((t.datetime_complete - t.datetime_start).total_seconds(), 3) for t in trials],
        "gaps_between_trials_s": [round(g, 3) for g in gaps],
        "median_gap_s": round(statistics.median(gaps), 3),
        "max_gap_s": round(max(gaps), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="processes per sweeper and size (the median is reported)")
    parser.add_argument("--trials", type=int, default=30, help="trials of the trivial app's sweep")
    parser.add_argument("--real-trials", type=int, default=5, help="tiny training trials of the resnet_lab sweep (0: skip)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        report = {
            "benchmark": "sweep_overhead",
            "date": date.today().isoformat(),
            "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "gpu": None},
            "trivial_app": trivial_app(args.runs, args.trials, Path(scratch)),
            "real_trials": real_trials(args.real_trials, Path(scratch)) if args.real_trials else None,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{report['date']}-cpu-sweep_overhead.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
