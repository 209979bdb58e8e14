"""Where the best peak LR lies relative to the LR range test: the evidence for hparams_search's
max_lr window.

    python -m benchmarks.lr_window [--data ../shared/data/cifar10-jpeg.tar.gz] [--optimizers sgd,adamw] [--seeds 0,1] [--points 8]

For each optimizer: one LR range test, then a grid multirun of the recipe over `--points`
log-spaced max_lr values (from the range test's suggestion / 10 to x 300) and `--seeds` seeds,
selected on a 10% validation split as sweeps are. Per optimizer: the validation accuracy of each
peak (mean over seeds), the best peak, and the best peak as a multiple of each anchor the range
test offers: its suggestion (the valley), the steepest descent, the loss minimum, and where the
loss diverged (4x the minimum). A window [anchor / low, anchor x high] holds the optimum well
inside when best / anchor lies between low and high with room on both sides. On a CPU the
recipe is sweep_pruning's (1/8 width, 5,000 / 2,000 images, 8 epochs); with CUDA the speedrun
recipe on all the data. Results go to <out>/<date>-<machine>-lr_window.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.cifar_speed.common import DEFAULT_DATA, REPO, image_folder
from benchmarks.cifar_speed.report import machine
from benchmarks.sweep_pruning import run, sizes

LOW, HIGH = 10.0, 300.0  # the grid spans suggestion / LOW .. suggestion x HIGH
DIVERGED = 4.0  # the range test's loss has diverged once it is this many times its minimum


def anchors(finder: dict[str, Any]) -> dict[str, float]:
    """The LRs a window could be centred on, read from one lr_finder.json."""
    lrs, losses = finder["lr"], finder["loss"]
    lowest = min(range(len(losses)), key=losses.__getitem__)
    diverged = next((lr for lr, loss in zip(lrs[lowest:], losses[lowest:]) if loss > DIVERGED * losses[lowest]), lrs[-1])
    return {"suggestion": finder["suggestion"], "valley": finder["valley"], "steepest": finder["steepest"], "loss_minimum": lrs[lowest], "divergence": diverged}


def grid(suggestion: float, points: int) -> list[float]:
    step = math.log(HIGH * LOW) / (points - 1)
    return [float(f"{suggestion / LOW * math.exp(i * step):.4g}") for i in range(points)]


def measure(optimizer: str, recipe: list[str], seeds: list[int], points: int, work: Path) -> dict[str, Any]:
    settings = [*recipe, f"optimizer={optimizer}", "data.val_fraction=0.1"]
    finder_dir = work / f"lr_find-{optimizer}"
    run(["resnet_lab.lr_find", *settings, f"hydra.run.dir={finder_dir}"], work)
    finder = json.loads((finder_dir / "lr_finder.json").read_text())
    peaks = grid(finder["suggestion"], points)
    sweep_dir = work / f"grid-{optimizer}"
    values = ",".join(str(p) for p in peaks)
    wall = run(
        ["resnet_lab.train", "-m", *settings, f"scheduler.max_lr={values}", f"trainer.seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={sweep_dir}"], work
    )
    accuracy: dict[float, list[float]] = {peak: [] for peak in peaks}
    test: dict[float, list[float]] = {peak: [] for peak in peaks}
    for summary_file in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(summary_file.read_text())
        peak = min(peaks, key=lambda p: abs(math.log(p / summary["max_lr"])))
        accuracy[peak].append(summary["objective"])
        test[peak].append(summary.get("test", {}).get("acc", math.nan))
    mean = {peak: statistics.mean(v) for peak, v in accuracy.items() if v}
    best = max(mean, key=mean.__getitem__)
    points_of = anchors(finder)
    return {
        "grid_wall_s": wall,
        "anchors": points_of,
        "peaks": [{"max_lr": p, "val_accuracy": accuracy[p], "test_accuracy": test[p], "mean_val_accuracy": mean.get(p)} for p in peaks],
        "best_max_lr": best,
        "best_mean_val_accuracy": mean[best],
        "best_on_grid_edge": best in (peaks[0], peaks[-1]),
        "best_over_anchor": {name: best / value for name, value in points_of.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or a .tar.gz of one (the JPEG copy)")
    parser.add_argument("--optimizers", type=lambda text: text.split(","), default=["sgd", "adamw"], help="optimizer options to measure")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1], help="training seeds per peak")
    parser.add_argument("--points", type=int, default=8, help="log-spaced max_lr values (>= 3)")
    parser.add_argument("--tiny", action="store_true", help="CPU-test sizes: 1/8 width, batch 8, 2 epochs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.points < 3:
        parser.error(f"--points={args.points}: at least 3 (a best peak inside the grid needs neighbours)")
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist: pass the JPEG copy's .tar.gz or an image-folder root")
    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    host = machine()
    label = "tiny" if args.tiny else (host["gpu"] or "cpu").lower().replace(" ", "-")
    path = args.out / f"{date.today().isoformat()}-{label}-lr_window.json"
    with tempfile.TemporaryDirectory(prefix="lr_window_") as scratch:
        work = Path(scratch)
        recipe = sizes(image_folder(args.data.resolve(), work), args.tiny, cuda)
        result: dict[str, Any] = {
            "date": date.today().isoformat(),
            "machine": host,
            "recipe": [setting for setting in recipe if not setting.startswith("data.root=")],
            "seeds": args.seeds,
            "grid": {"low": LOW, "high": HIGH, "points": args.points},
            "optimizers": {},
        }
        for optimizer in args.optimizers:  # the file is rewritten after each optimizer: a cut-short run keeps the ones done
            result["optimizers"][optimizer] = measure(optimizer, recipe, args.seeds, args.points, work)
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2) + "\n")
            part = result["optimizers"][optimizer]
            ratios = ", ".join(f"{name} x{ratio:.3g}" for name, ratio in part["best_over_anchor"].items())
            print(f"{optimizer}: best max_lr {part['best_max_lr']} ({100 * part['best_mean_val_accuracy']:.2f}% validation); best / {ratios}", flush=True)
    return result


if __name__ == "__main__":
    main()
