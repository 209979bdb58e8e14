"""One epoch under torch.profiler: kernel time, gaps between kernels, host time in ops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.cifar_speed.common import (
    FLOP_PER_TRAIN_EPOCH,
    Scale,
    compose_run,
    timed,
)
from resnet_lab.config import validate


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals in microseconds, as seconds: kernels on
    several streams, or ops on several host threads, overlap and must not be counted twice."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total / 1e6


def run_profile(root: Path, scale: Scale) -> dict[str, Any]:
    """One speedrun epoch after warm-up under torch.profiler, split where the time goes: the GPU
    running kernels, the gaps between kernels (launch latency, host stalls), and on the host the
    time inside torch ops (any thread: autograd runs backward on its own) against the rest, which
    is Python: the framework's loop. On a CPU only the host split exists."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from resnet_lab.train.run import build_trainer

    cfg = compose_run(root, scale, "trainer.epochs=2")
    trainer, _, _ = build_trainer(validate(cfg))
    trainer.train_epoch(1, 2)
    cuda = trainer.device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        _, wall = timed(trainer.device, lambda: trainer.train_epoch(2, 2))
    events = prof.events()
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    host_ops = [e for e in events if e.device_type == DeviceType.CPU and not e.is_async and e.cpu_parent is None]
    in_ops = covered_seconds([(e.time_range.start, e.time_range.end) for e in host_ops])
    result: dict[str, Any] = {
        "epoch_wall_s": wall,
        "host_in_ops_s": in_ops,
        "host_python_s": max(0.0, wall - in_ops),
        "host_ops": len(host_ops),
        "achieved_tflops": (
            FLOP_PER_TRAIN_EPOCH * len(trainer.train_loader) * trainer.train_loader.batch_size / 50_000 / wall / 1e12 if scale.width == 1.0 else None
        ),  # the FLOP count is the full-width net's
    }
    if cuda and not kernels:
        raise RuntimeError("torch.profiler recorded no CUDA kernels for a CUDA epoch; cannot split kernel time from gaps")
    if cuda:
        busy = covered_seconds([(e.time_range.start, e.time_range.end) for e in kernels])
        top = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)[:10]
        result |= {
            "kernel_s": busy,
            "gap_s": max(0.0, wall - busy),
            "gpu_busy": busy / wall,
            "kernels": len(kernels),
            "mean_gap_us": 1e6 * max(0.0, wall - busy) / max(1, len(kernels)),
            "top_kernels": [{"name": e.key[:80], "s": e.self_device_time_total / 1e6} for e in top],
        }
    return result


# ----------------------------------------------------------------------------- report
