"""What every part shares: the scale of a run, the timing helper (device drained on both sides),
the data and the speedrun settings the framework parts compose."""

from __future__ import annotations

import os
import statistics
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from resnet_lab import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
PARTS = ("speedrun", "airbench", "baseline", "bare", "sweep", "profile")
SEED_ACCURACY = 0.8063  # the seed's test accuracy after 20 epochs
FLOP_PER_TRAIN_EPOCH = 113.8e12  # custom ResNet, 50,000 images, forward + backward
TARGETS = {
    "speedrun_time_vs_airbench": 1.5,
    "epoch_s": 0.45,
    "framework_vs_bare": 1.03,
    "speedup_to_seed_accuracy": 20.0,
    "sweep_vs_8_trials": 1.1,
}


@dataclass(frozen=True)
class Scale:
    """How big each part runs: the real benchmark, or CPU-sized for the tests."""

    seeds: int
    width: float
    epochs: int | None  # None: the experiment's own
    baseline_epochs: int
    bare_epochs: int
    sweep_trials: int
    train_subset: int | None
    test_subset: int | None
    batch_size: int | None
    eval_batch_size: int | None
    extra: tuple[str, ...] = ()  # the user's --override settings, last: they win

    def overrides(self) -> list[str]:
        pairs = {
            "model.width_multiplier": self.width,
            "trainer.epochs": self.epochs,
            "data.train_subset": self.train_subset,
            "data.test_subset": self.test_subset,
            "data.batch_size": self.batch_size,
            "data.eval_batch_size": self.eval_batch_size,
        }
        return [f"{key}={value}" for key, value in pairs.items() if value is not None] + list(self.extra)


FULL = Scale(
    seeds=5,
    width=1.0,
    epochs=None,
    baseline_epochs=20,
    bare_epochs=10,
    sweep_trials=8,
    train_subset=None,
    test_subset=None,
    batch_size=None,
    eval_batch_size=None,
)
TINY = Scale(
    seeds=2,
    width=0.125,
    epochs=2,
    baseline_epochs=2,
    bare_epochs=2,
    sweep_trials=2,
    train_subset=None,
    test_subset=None,
    batch_size=8,
    eval_batch_size=32,
    extra=("trainer.compile=auto",),
)  # no compiling on a CPU
# --tiny on a big image tree (the whole JPEG copy, say) keeps at most this many train / test images.
TINY_IMAGES = (512, 256)


def tiny_on(root: Path, scale: Scale) -> Scale:
    """`scale` with subsets that keep a --tiny run CPU-sized whatever the data's size."""
    counts = [sum(1 for p in (root / split).rglob("*") if p.is_file()) for split in ("train", "test")]
    train, test = (cap if count > cap else None for count, cap in zip(counts, TINY_IMAGES))
    return Scale(**{**scale.__dict__, "train_subset": train, "test_subset": test})


def framework_env(**extra: str) -> dict[str, str]:
    """The environment of a framework command started from any directory: this checkout first on
    the import path, plus `extra`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **extra}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[Any, float]:
    """Wall seconds of `work` with the device drained on both sides."""
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return result, time.perf_counter() - start


def peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


# ----------------------------------------------------------------------------- data


def image_folder(data: Path, work: Path) -> Path:
    """The image-folder root: `data` itself, or the tarball unpacked into `work`."""
    if data.is_dir():
        return data
    with tarfile.open(data) as archive:
        archive.extractall(work, filter="data")
    roots = [p.parent for p in work.glob("*/train")]
    if len(roots) != 1:
        raise SystemExit(f"error: {data} does not unpack to one <root>/train, <root>/test tree")
    return roots[0]


def speedrun_settings(root: Path, scale: Scale) -> list[str]:
    """The overrides every framework part runs with: speedrun on the image folder, untracked."""
    return ["experiment=speedrun", "data=image_folder", f"data.root={root}", "logger=none", "explain=none", "trainer.progress=false", *scale.overrides()]


def compose_run(root: Path, scale: Scale, *extra: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR)):
        return compose("train", overrides=[*speedrun_settings(root, scale), *extra])
