"""Where the best peak LR lies relative to the LR range test, and where the best weight decay
lies for each optimizer: the evidence for hparams_search's max_lr window and each optimizer's
weight_decay_window.

    python -m benchmarks.lr_window [--data ../shared/data/cifar10-jpeg.tar.gz] [--optimizers sgd,adamw] [--seeds 0,1] [--points 8]
        [--decay-points 7] [--span 0.1 300] [--resume RESULT]

For each optimizer: one LR range test, then a grid multirun of the recipe over `--points`
log-spaced max_lr values (from the range test's suggestion x 0.1 to x 300, or `--span`) and `--seeds` seeds,
selected on a 10% validation split as sweeps are. Per optimizer: the validation accuracy of each
peak (mean over seeds), the best peak, and the best peak as a multiple of each anchor the range
test offers: its suggestion (the valley), the steepest descent, the loss minimum, and where the
loss diverged (4x the minimum). A window [anchor / low, anchor x high] holds the optimum well
inside when best / anchor lies between low and high with room on both sides. Then, at that best
peak, a grid of `--decay-points` weight decays, one per decade from 1e-6 to 1 (coupled L2 and
AdamW's decoupled decay live decades apart), the same seeds: the best decay per optimizer.
`--resume` keeps the parts an earlier result file holds and runs only the missing ones. On a CPU the
recipe is sweep_pruning's (1/8 width, 5,000 / 2,000 images, 8 epochs); with CUDA the speedrun
recipe on all the data. Results go to <out>/<date>-<machine>-lr_window.json (another `--span`:
...-lr_window-span<low>-<high>.json, e.g. a grid above the default window's top edge).
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

from omegaconf import OmegaConf

from benchmarks.cifar_speed.common import DEFAULT_DATA, REPO, image_folder
from benchmarks.sweep_pruning import placement, run, sizes
from resnet_lab.sweep.report import WD_KEY
from resnet_lab.trial import LR_KEY

SPAN = (0.1, 300.0)  # the grid spans suggestion x SPAN[0] .. suggestion x SPAN[1] (the result's grid.low is 1 / SPAN[0])
DECAYS = (1e-6, 1.0)  # the weight-decay grid's span, wide enough for coupled and decoupled decay alike
DIVERGED = 4.0  # the range test's loss has diverged once it is this many times its minimum


def anchors(finder: dict[str, Any]) -> dict[str, float]:
    """The LRs a window could be centred on, read from one lr_finder.json."""
    lrs, losses = finder["lr"], finder["loss"]
    lowest = min(range(len(losses)), key=losses.__getitem__)
    diverged = next((lr for lr, loss in zip(lrs[lowest:], losses[lowest:]) if loss > DIVERGED * losses[lowest]), lrs[-1])
    return {"suggestion": finder["suggestion"], "valley": finder["valley"], "steepest": finder["steepest"], "loss_minimum": lrs[lowest], "divergence": diverged}


def grid(suggestion: float, points: int, span: tuple[float, float] = SPAN) -> list[float]:
    return log_grid(suggestion * span[0], suggestion * span[1], points)


def log_grid(low: float, high: float, points: int) -> list[float]:
    step = math.log(high / low) / (points - 1)
    return [float(f"{low * math.exp(i * step):.4g}") for i in range(points)]


def grid_run(settings: list[str], swept: str, values: list[float], seeds: list[int], name: str, work: Path) -> dict[str, Any]:
    """A grid multirun of `swept` over `values` x `seeds`: each value's validation and test
    accuracy per seed (read from each job's saved config), and the best by mean validation."""
    sweep_dir = work / name
    listed = ",".join(str(v) for v in values)
    wall = run(["resnet_lab.train", "-m", *settings, f"{swept}={listed}", f"trainer.seed={','.join(map(str, seeds))}", f"hydra.sweep.dir={sweep_dir}"], work)
    accuracy: dict[float, list[float]] = {value: [] for value in values}
    test: dict[float, list[float]] = {value: [] for value in values}
    for summary_file in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(summary_file.read_text())
        ran = OmegaConf.select(OmegaConf.load(summary_file.parent / ".hydra" / "config.yaml"), swept)
        value = min(values, key=lambda v: abs(math.log(v / ran)))
        accuracy[value].append(summary["objective"])
        test[value].append(summary.get("test", {}).get("acc", math.nan))
    mean = {value: statistics.mean(v) for value, v in accuracy.items() if v}
    best = max(mean, key=mean.__getitem__)
    rows = [{swept: v, "val_accuracy": accuracy[v], "test_accuracy": test[v], "mean_val_accuracy": mean.get(v)} for v in values]
    return {"wall_s": wall, "rows": rows, "best": best, "best_mean_val_accuracy": mean[best], "best_on_grid_edge": best in (values[0], values[-1])}


def measure_decay(optimizer: str, max_lr: float, recipe: list[str], seeds: list[int], points: int, work: Path) -> dict[str, Any]:
    """Weight decay, one value per decade of DECAYS, at the optimizer's best peak."""
    settings = [*recipe, f"optimizer={optimizer}", "data.val_fraction=0.1", f"scheduler.max_lr={max_lr}"]
    found = grid_run(settings, WD_KEY, log_grid(*DECAYS, points), seeds, f"decay-{optimizer}", work)
    return {
        "max_lr": max_lr,
        "grid_wall_s": found["wall_s"],
        "decays": found["rows"],
        "best_weight_decay": found["best"],
        "best_mean_val_accuracy": found["best_mean_val_accuracy"],
        "best_on_grid_edge": found["best_on_grid_edge"],
    }


def measure(optimizer: str, recipe: list[str], seeds: list[int], points: int, work: Path, span: tuple[float, float] = SPAN) -> dict[str, Any]:
    settings = [*recipe, f"optimizer={optimizer}", "data.val_fraction=0.1"]
    finder_dir = work / f"lr_find-{optimizer}"
    run(["resnet_lab.lr_find", *settings, f"hydra.run.dir={finder_dir}"], work)
    finder = json.loads((finder_dir / "lr_finder.json").read_text())
    peaks = grid(finder["suggestion"], points, span)
    found = grid_run(settings, LR_KEY, peaks, seeds, f"grid-{optimizer}", work)
    best = found["best"]
    points_of = anchors(finder)
    return {
        "grid_wall_s": found["wall_s"],
        "anchors": points_of,
        "peaks": [{"max_lr": row.pop(LR_KEY), **row} for row in found["rows"]],
        "best_max_lr": best,
        "best_mean_val_accuracy": found["best_mean_val_accuracy"],
        "best_on_grid_edge": found["best_on_grid_edge"],
        "best_over_anchor": {name: best / value for name, value in points_of.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or a .tar.gz of one (the JPEG copy)")
    parser.add_argument("--optimizers", type=lambda text: text.split(","), default=["sgd", "adamw"], help="optimizer options to measure")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1], help="training seeds per peak")
    parser.add_argument("--points", type=int, default=8, help="log-spaced max_lr values (>= 3)")
    parser.add_argument("--decay-points", type=int, default=7, help="weight decays from 1e-6 to 1 at the best peak (0: none, else >= 3)")
    parser.add_argument("--span", type=float, nargs=2, default=list(SPAN), metavar=("LOW", "HIGH"), help="the max_lr grid from suggestion x LOW to x HIGH")
    parser.add_argument("--resume", type=Path, help="a result of this benchmark to complete: its parts are kept, the missing ones run")
    parser.add_argument("--tiny", action="store_true", help="CPU-test sizes: 1/8 width, batch 8, 2 epochs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.points < 3:
        parser.error(f"--points={args.points}: at least 3 (a best peak inside the grid needs neighbours)")
    if args.decay_points != 0 and args.decay_points < 3:
        parser.error(f"--decay-points={args.decay_points}: 0 (no weight-decay grid) or at least 3")
    span = (args.span[0], args.span[1])
    if not 0 < span[0] < span[1]:
        parser.error(f"--span {span[0]:g} {span[1]:g}: two factors with 0 < LOW < HIGH")
    cuda, host, label = placement(parser, args)
    named = "" if span == SPAN else f"-span{span[0]:g}-{span[1]:g}"
    path = args.resume or args.out / f"{date.today().isoformat()}-{label}-lr_window{named}.json"
    with tempfile.TemporaryDirectory(prefix="lr_window_") as scratch:
        work = Path(scratch)
        recipe = sizes(image_folder(args.data.resolve(), work), args.tiny, cuda)
        result: dict[str, Any] = {
            "date": date.today().isoformat(),
            "machine": host,
            "recipe": [setting for setting in recipe if not setting.startswith("data.root=")],
            "seeds": args.seeds,
            "grid": {"low": 1 / span[0], "high": span[1], "points": args.points},
            "optimizers": {},
            "weight_decay": {},
        }
        if args.resume is not None:
            earlier = json.loads(args.resume.read_text())
            same = ("machine", "recipe", "seeds", "grid")
            if [earlier.get(key) for key in same] != [result[key] for key in same]:
                parser.error(f"--resume {args.resume} ran another machine, recipe, seeds or grid: not comparable, run without --resume")
            result = {"weight_decay": {}, **earlier}
        for optimizer in args.optimizers:  # the file is rewritten after each part: a cut-short run keeps the ones done
            if optimizer not in result["optimizers"]:
                result["optimizers"][optimizer] = measure(optimizer, recipe, args.seeds, args.points, work, span)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(result, indent=2) + "\n")
            part = result["optimizers"][optimizer]
            ratios = ", ".join(f"{name} x{ratio:.3g}" for name, ratio in part["best_over_anchor"].items())
            print(f"{optimizer}: best max_lr {part['best_max_lr']} ({100 * part['best_mean_val_accuracy']:.2f}% validation); best / {ratios}", flush=True)
            decays = result["weight_decay"]
            if args.decay_points and optimizer not in decays:
                decays[optimizer] = measure_decay(optimizer, part["best_max_lr"], recipe, args.seeds, args.decay_points, work)
                path.write_text(json.dumps(result, indent=2) + "\n")
            if optimizer in decays:
                found = decays[optimizer]
                accuracy = f"{100 * found['best_mean_val_accuracy']:.2f}% validation"
                print(f"{optimizer}: best weight_decay {found['best_weight_decay']} at max_lr {found['max_lr']} ({accuracy})", flush=True)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
