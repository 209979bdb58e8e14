"""The seed's recipe through the framework and by hand, side by side, epoch by epoch.

    python -m benchmarks.seed_pipelines [--data ../shared/data/cifar10-jpeg.tar.gz] [--out benchmarks/results]

`experiment=seed_replica` (Adam with coupled decay 1e-2, one-cycle to 0.01, crop + flip + 8x8
cutout, batch 512) trained by `python -m resnet_lab.train`, with and without its cutout, against
the seed-style pipeline of benchmarks/cifar_speed/baseline.py (a torchvision DataLoader with CPU
transforms of crop + flip, fp32, the framework's own model, optimizer and schedule builders). The
same width, images, epochs and seed everywhere; every epoch evaluated on the test split. On a CPU
at a reduced size (1/4 width, 10,000 / 2,000 images, 8 epochs); with CUDA the seed's full 20
epochs. Results: <out>/<date>-<machine>-seed_pipelines.json with the curves and the largest
per-epoch gap between the pipelines.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.cifar_speed.baseline import run_baseline
from benchmarks.cifar_speed.common import DEFAULT_DATA, REPO, Scale, framework_env, image_folder
from benchmarks.cifar_speed.report import machine, machine_label


def sizes(cuda: bool) -> Scale:
    common = dict(seeds=1, bare_epochs=0, sweep_trials=0, batch_size=None)
    if cuda:
        return Scale(**common, width=1.0, epochs=20, baseline_epochs=20, train_subset=None, test_subset=None, eval_batch_size=None)
    return Scale(**common, width=0.25, epochs=8, baseline_epochs=8, train_subset=10000, test_subset=2000, eval_batch_size=1000)


def framework_curve(root: Path, scale: Scale, work: Path, name: str, *extra: str) -> list[float]:
    """Test accuracy after each epoch of `python -m resnet_lab.train experiment=seed_replica`."""
    run_dir = work / name
    command = [sys.executable, "-m", "resnet_lab.train", "experiment=seed_replica", "data=image_folder", f"data.root={root}", *scale.overrides()]
    command += ["trainer.eval_every=1", "logger=none", "explain=none", "trainer.progress=false", f"hydra.run.dir={run_dir}", *extra]
    with open(work / f"{name}.log", "w") as log:
        code = subprocess.run(command, cwd=work, env=framework_env(), stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {code}; see {work / name}.log")
    with open(run_dir / "metrics.csv") as handle:
        return [float(row["eval_acc"]) for row in csv.DictReader(handle)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_pipelines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or a .tar.gz of one (the JPEG copy)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    import torch

    scale = sizes(torch.cuda.is_available())
    with tempfile.TemporaryDirectory(prefix="seed_pipelines_") as scratch:
        work = Path(scratch)
        root = image_folder(args.data.resolve(), work)
        curves = {
            "framework (crop + flip + cutout, the recipe)": framework_curve(root, scale, work, "framework"),
            "framework without cutout (crop + flip)": framework_curve(root, scale, work, "framework_no_cutout", "augmentation=crop_flip"),
            "seed-style pipeline (crop + flip)": [h["accuracy"] for h in run_baseline(root, scale)["history"]],
        }
    same_augmentation = zip(curves["framework without cutout (crop + flip)"], curves["seed-style pipeline (crop + flip)"])
    host = machine()
    result = {
        "date": date.today().isoformat(),
        "machine": host,
        "scale": {"width": scale.width, "epochs": scale.epochs, "train_subset": scale.train_subset, "test_subset": scale.test_subset},
        "curves": curves,
        "largest_gap_same_augmentation_points": max(100 * abs(a - b) for a, b in same_augmentation),
        "final": {name: curve[-1] for name, curve in curves.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{result['date']}-{machine_label(host)}-seed_pipelines.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for name, curve in curves.items():
        print(f"{name:48s} " + " ".join(f"{100 * a:5.1f}" for a in curve))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
