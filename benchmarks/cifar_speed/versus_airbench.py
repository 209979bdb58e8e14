"""airbench94 as published, over the same seeds and the same images."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from benchmarks.cifar_speed.common import (
    Scale,
    compose_run,
    mean_std,
    peak_memory,
)
from resnet_lab.config import validate


def write_airbench_files(root: Path, scale: Scale, folder: Path) -> Path:
    """airbench reads `cifar10/train.pt` and `cifar10/test.pt` relative to the working directory:
    {'images': N x H x W x C uint8, 'labels': int64, 'classes': names}. Written from the same
    decoded tensors the framework trains on."""
    from resnet_lab.data import load_splits

    cfg = compose_run(root, scale)
    splits = load_splits(validate(cfg).data, root)
    target = folder / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (("train", splits.train_images, splits.train_labels), ("test", splits.eval_images, splits.eval_labels)):
        payload = {"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels.long(), "classes": splits.classes}
        torch.save(payload, target / f"{name}.pt")
    return folder


# ----------------------------------------------------------------------------- parts


_FINAL_ROW = re.compile(r"^\|\s*\S*\s*\|\s*eval\s*\|")


def run_airbench(work: Path, scale: Scale) -> dict[str, Any]:
    """airbench94 as published (its own net, loader and timing), over the same seeds."""
    if not torch.cuda.is_available():
        return {"skipped": "airbench94 runs only on CUDA"}
    import airbench

    runs = []
    previous = Path.cwd()
    os.chdir(work)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            airbench.warmup94()  # one step (it stops early only when verbose): CUDA and cuDNN warm
        for seed in range(scale.seeds):
            torch.manual_seed(seed)
            torch.cuda.reset_peak_memory_stats()
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                airbench.train94(verbose=True)
            accuracy, seconds = airbench_result(printed.getvalue())
            runs.append({"seed": seed, "accuracy": accuracy, "time_s": seconds, "peak_memory_gib": peak_memory(torch.device("cuda"))})
            print(f"airbench94 seed {seed}: {100 * runs[-1]['accuracy']:.2f}% in {runs[-1]['time_s']:.2f} s", flush=True)
    finally:
        os.chdir(previous)
    return {
        "version": airbench_version(),
        "accuracy": mean_std([r["accuracy"] for r in runs]),
        "time_s": mean_std([r["time_s"] for r in runs]),
        "peak_memory_gib": max(r["peak_memory_gib"] for r in runs),
        "runs": runs,
    }


def airbench_result(printed: str) -> tuple[float, float]:
    """(TTA test accuracy, seconds) from the final 'eval' row of the table train94 prints: it
    returns only the model, and times itself with CUDA events by the rules we follow."""
    row = next((line for line in printed.splitlines() if _FINAL_ROW.match(line)), None)
    if row is None:
        raise RuntimeError(f"airbench printed no final 'eval' row: {printed[-500:]!r}")
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    return float(cells[5]), float(cells[6])


def airbench_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("airbench")
    except PackageNotFoundError:
        return None
