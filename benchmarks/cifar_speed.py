"""`python -m benchmarks.cifar_speed`: the framework's speed, side by side, on one GPU.

Parts (all on the same data, the JPEG copy of CIFAR-10 by default):
  speedrun  experiment=speedrun over several seeds through the framework's own path
  airbench  airbench94 (PyPI package) over the same seeds, on the same data
  baseline  the seed's recipe the seed's way: torchvision DataLoader, CPU transforms, fp32
  bare      the speedrun's model, optimizer and GPU tensors in a minimal hand-written loop
  sweep     an Optuna sweep of speedrun trials in one process, against one trial alone
  profile   one speedrun epoch under torch.profiler: kernels, gaps between them, host time in ops
Timing follows airbench's rules: training plus the final (TTA) evaluation, data already on the
device, compile warm-up excluded and reported on its own. Writes benchmarks/results/<date>-<gpu>.json
and prints a table. `--tiny` shrinks everything to CPU size (the tests run it so it cannot rot).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from resnet_lab import CONF_DIR
from resnet_lab.config import validate
from resnet_lab.data.datasets import READ_MESSAGE
from resnet_lab.train.environment import git_commit

REPO = Path(__file__).resolve().parent.parent
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


def run_speedrun(root: Path, scale: Scale) -> dict[str, Any]:
    """The framework's own path (components, Trainer, compiled model from the process cache),
    one warm-up run that pays for compilation, then one timed run per seed."""
    from resnet_lab.train.run import build_trainer, objective

    def one(seed: int, *extra: str) -> tuple[dict[str, Any], Any]:
        cfg = compose_run(root, scale, f"trainer.seed={seed}", *extra)
        trainer, _, _ = build_trainer(validate(cfg))
        reset_peak(trainer.device)
        history, seconds = timed(trainer.device, lambda: trainer.fit(cfg.trainer.epochs))
        epochs = [m.epoch_time_s for m in history]
        return {
            "seed": seed,
            "accuracy": objective(history),
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


class _InMemoryImages(torch.utils.data.Dataset):
    """The seed's data path: uint8 images in host memory, each item a PIL image through CPU-side
    torchvision transforms, batched by a multi-worker DataLoader."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images.permute(0, 2, 3, 1).numpy(), labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def run_baseline(root: Path, scale: Scale) -> dict[str, Any]:
    """experiment=seed_replica's recipe (Adam, one-cycle, cutout-free CPU transforms) in fp32
    with a torchvision DataLoader, evaluated each epoch; timed (training only) until the test
    accuracy first reaches the seed's 80.63%, or through its epochs."""
    from torchvision import transforms

    from resnet_lab.config.targets import build
    from resnet_lab.data import load_splits
    from resnet_lab.optim.optimizers import build_optimizer
    from resnet_lab.optim.schedulers import build_scheduler

    cfg = compose_run(root, scale, "experiment=seed_replica", f"trainer.epochs={scale.baseline_epochs}")
    splits = load_splits(validate(cfg).data, root)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    normalise = transforms.Normalize(list(cfg.data.mean), list(cfg.data.std))
    train_tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4, padding_mode="reflect"), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalise]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), normalise])
    workers = min(8, os.cpu_count() or 1)
    loader_options = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    train = torch.utils.data.DataLoader(
        _InMemoryImages(splits.train_images, splits.train_labels, train_tf), batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, **loader_options
    )
    test = torch.utils.data.DataLoader(_InMemoryImages(splits.eval_images, splits.eval_labels, test_tf), batch_size=cfg.data.eval_batch_size, **loader_options)
    torch.manual_seed(0)
    model = build(cfg.model, num_classes=splits.num_classes).to(device)
    optimizer = build_optimizer(cfg.optimizer, model, lr=float(cfg.scheduler.max_lr), batch_size=cfg.data.batch_size)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps_per_epoch=len(train), epochs=scale.baseline_epochs)
    reset_peak(device)
    training_s, reached_at, history = 0.0, None, []
    for epoch in range(1, scale.baseline_epochs + 1):

        def train_epoch() -> None:
            model.train()
            for images, labels in train:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.trainer.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()

        _, seconds = timed(device, train_epoch)
        training_s += seconds
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test:
                correct += int((model(images.to(device)).argmax(1).cpu() == labels).sum())
        accuracy = correct / len(splits.eval_labels)
        history.append({"epoch": epoch, "accuracy": accuracy, "epoch_s": seconds})
        print(f"baseline epoch {epoch}: {100 * accuracy:.2f}% ({seconds:.1f} s)", flush=True)
        if reached_at is None and accuracy >= SEED_ACCURACY:
            reached_at = {"epoch": epoch, "time_s": training_s}
            break
    return {
        "workers": workers,
        "reached_seed_accuracy": reached_at,
        "time_s": training_s,
        "final_accuracy": history[-1]["accuracy"],
        "epoch_s": statistics.median(h["epoch_s"] for h in history),
        "peak_memory_gib": peak_memory(device),
        "history": history,
    }


def run_bare(root: Path, scale: Scale) -> dict[str, Any]:
    """The framework's cost per epoch: the same model (compiled the same way), fused SGD,
    one-cycle schedule and GPU tensors, trained by the shortest loop that does the same work."""
    from resnet_lab.train.run import build_trainer

    cfg = compose_run(root, scale, f"trainer.epochs={scale.bare_epochs}")
    framework, _, _ = build_trainer(validate(cfg))
    framework.fit(scale.bare_epochs)
    framework_epoch_s = statistics.median(m.epoch_time_s for m in framework.history[1:] or framework.history)

    trainer, _, _ = build_trainer(validate(cfg))  # fresh weights, optimizer and schedule: only its parts are used
    model, optimizer, scheduler, loader = trainer.train_model, trainer.optimizer, trainer.scheduler, trainer.train_loader
    images, labels, device = loader.images, loader.labels, loader.device
    mean, inv_std, augment, generator, batch = loader.mean, loader.inv_std, loader.augment, loader.generator, loader.batch_size
    memory_format = loader.memory_format
    dtype = torch.bfloat16 if trainer.precision == "bf16" else None
    smoothing = cfg.trainer.label_smoothing
    steps = len(labels) // batch
    cuda_graphs = trainer.cuda_graphs

    def epoch() -> None:
        model.train()
        order = torch.randperm(len(labels), device=device, generator=generator)
        for step in range(steps):
            if cuda_graphs:  # a new step: the graphs may overwrite the last step's outputs
                torch.compiler.cudagraph_mark_step_begin()
            index = order[step * batch : (step + 1) * batch]
            x = (images[index].float() - mean) * inv_std
            if augment is not None:
                x = augment(x, generator)
            x = x.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), labels[index], label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    reset_peak(device)
    times = [timed(device, epoch)[1] for _ in range(scale.bare_epochs)]
    bare_epoch_s = statistics.median(times[1:] or times)
    return {
        "bare_epoch_s": bare_epoch_s,
        "framework_epoch_s": framework_epoch_s,
        "ratio": framework_epoch_s / bare_epoch_s,
        "peak_memory_gib": peak_memory(device),
    }


def run_sweep(root: Path, scale: Scale, work: Path) -> dict[str, Any]:
    """`python -m resnet_lab.train -m hparams_search=optuna experiment=speedrun` with n trials
    in one process, against the same command for one trial; recompiles counted from TORCH_LOGS,
    data reads from the job log."""
    base = [sys.executable, "-m", "resnet_lab.train", "-m", "hparams_search=optuna", "hparams_search.max_lr_bounds=[0.2,0.8]", *speedrun_settings(root, scale)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "TORCH_LOGS": "recompiles"}

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


def run_part(runner: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One part's result, or its error: a part that breaks (on a GPU it has never met, say) is
    reported in the table and the JSON, and the parts after it still run."""
    start = time.perf_counter()
    try:
        result = runner()
    except Exception as error:  # noqa: BLE001 - recorded, then the next part runs
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"[:2000]}
    return {**result, "part_wall_s": time.perf_counter() - start}


def machine() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def judge(parts: dict[str, Any], applicable: bool) -> dict[str, Any]:
    """Each target with its measured value (None where the part did not run). The targets are
    for full-size runs on a GPU; elsewhere values are listed but not judged (met: None)."""
    speed, air, base, bare, sweep = (parts.get(k, {}) for k in ("speedrun", "airbench", "baseline", "bare", "sweep"))
    measured: dict[str, float | None] = {
        "speedrun_time_vs_airbench": speed["time_s"]["mean"] / air["time_s"]["mean"] if "time_s" in speed and "time_s" in air else None,
        "epoch_s": speed.get("epoch_s"),
        "framework_vs_bare": bare.get("ratio"),
        "speedup_to_seed_accuracy": None,
        "sweep_vs_8_trials": sweep.get("ratio"),
    }
    if base.get("reached_seed_accuracy") and "runs" in speed:
        measured["speedup_to_seed_accuracy"] = base["reached_seed_accuracy"]["time_s"] / speed["time_s"]["mean"]
    verdicts = {}
    for key, limit in TARGETS.items():
        value = measured[key]
        met = None if value is None or not applicable else (value >= limit if key == "speedup_to_seed_accuracy" else value <= limit)
        verdicts[key] = {"value": value, "target": limit, "met": met}
    if "accuracy" in speed and "accuracy" in air:
        verdicts["speedrun_reaches_airbench_accuracy"] = {
            "value": speed["accuracy"]["mean"],
            "target": air["accuracy"]["mean"],
            "met": speed["accuracy"]["mean"] >= air["accuracy"]["mean"] if applicable else None,
        }
    return verdicts


def table(result: dict[str, Any]) -> str:
    parts = result["parts"]
    rows = ["| part | accuracy | time (s) | per epoch (s) | peak GPU memory (GiB) |", "|---|---|---|---|---|"]

    def fmt(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    def seeded(label: str, part: dict[str, Any], extra_time: str, epoch: str) -> str:
        accuracy = part["accuracy"]
        return (
            f"| {label} ({accuracy['n']} seeds) | {100 * accuracy['mean']:.2f} ± {100 * accuracy['std']:.2f}% | "
            f"{part['time_s']['mean']:.2f}{extra_time} | {epoch} | {fmt(part['peak_memory_gib'])} |"
        )

    if "runs" in parts.get("speedrun", {}):
        s = parts["speedrun"]
        rows.append(seeded("speedrun (custom ResNet)", s, f" (+{s['warmup_s']:.1f} warm-up)", fmt(s["epoch_s"], ".3f")))
    if "runs" in parts.get("airbench", {}):
        rows.append(seeded(f"airbench94 {parts['airbench']['version']}", parts["airbench"], "", "-"))
    if "history" in parts.get("baseline", {}):
        b = parts["baseline"]
        reached = b["reached_seed_accuracy"]
        note = f"80.63% at epoch {reached['epoch']}" if reached else f"{100 * b['final_accuracy']:.2f}% after {len(b['history'])} epochs"
        rows.append(f"| seed-style baseline (DataLoader, fp32) | {note} | {b['time_s']:.1f} | {b['epoch_s']:.2f} | {fmt(b['peak_memory_gib'])} |")
    if "ratio" in parts.get("bare", {}):
        b = parts["bare"]
        rows.append(
            f"| bare loop vs framework | - | - | {b['bare_epoch_s']:.3f} vs {b['framework_epoch_s']:.3f} (x{b['ratio']:.3f}) | {fmt(b['peak_memory_gib'])} |"
        )
    if "ratio" in parts.get("sweep", {}):
        w = parts["sweep"]
        rows.append(
            f"| sweep, {w['trials']} trials in one process | - | {w['total_s']:.1f} vs {w['trials']} x {w['one_trial_s']:.1f} "
            f"(x{w['ratio']:.2f}; {w['recompiles']} recompiles, {w['data_reads']} data read) | - | - |"
        )
    if "epoch_wall_s" in parts.get("profile", {}):
        p = parts["profile"]
        device = (
            f"kernels {p['kernel_s']:.3f} + gaps {p['gap_s']:.3f} ({100 * p['gpu_busy']:.0f}% busy, {p['kernels']} kernels, "
            f"{fmt(p['achieved_tflops'], '.0f')} TFLOP/s); "
            if "kernel_s" in p
            else ""
        )
        rows.append(f"| profile: one epoch | - | {device}host in ops {p['host_in_ops_s']:.3f}, Python {p['host_python_s']:.3f} | {p['epoch_wall_s']:.3f} | - |")
    rows += [f"| {name}: skipped ({part['skipped']}) | - | - | - | - |" for name, part in parts.items() if "skipped" in part]
    rows += [f"| {name}: FAILED ({part['error'][:200]}) | - | - | - | - |" for name, part in parts.items() if "error" in part]
    lines = [
        f"{result['machine']['gpu'] or 'CPU'}, torch {result['machine']['torch']}, commit {(result['commit'] or '?')[:8]}, {result['date']}",
        "",
        *rows,
        "",
    ]
    for key, verdict in result["targets"].items():
        state = {True: "met", False: "NOT met", None: "not judged" if verdict["value"] is not None else "not measured"}[verdict["met"]]
        lines.append(f"- {key}: {fmt(verdict['value'], '.3f')} (target {verdict['target']:.4g}): {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cifar_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image-folder root or the JPEG-copy tarball")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--seeds", type=int, help="seeds for speedrun and airbench (default 5; tiny 2)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results JSON")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized: 1/8-width net, 2 epochs, 2 trials (for tests)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting for every framework part, as on the command line (repeatable), e.g. --override trainer.compile=reduce_overhead",
    )
    args = parser.parse_args(argv)
    parts_wanted = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts_wanted) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist (pass the image-folder root or cifar10-jpeg.tar.gz)")
    if not args.tiny and not torch.cuda.is_available():
        print("error: the full benchmark needs a CUDA GPU and none is visible; --tiny runs every part at CPU size", file=sys.stderr)
        raise SystemExit(2)
    scale = TINY if args.tiny else FULL
    if args.override:
        scale = Scale(**{**scale.__dict__, "extra": (*scale.extra, *args.override)})
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        scale = Scale(**{**scale.__dict__, "seeds": args.seeds})

    with tempfile.TemporaryDirectory(prefix="cifar_speed_") as scratch:
        work = Path(scratch)
        root = image_folder(args.data, work / "data")
        if args.tiny:
            scale = tiny_on(root, scale)
        parts: dict[str, Any] = {}
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "speedrun": lambda: run_speedrun(root, scale),
            "airbench": lambda: run_airbench(write_airbench_files(root, scale, work / "airbench"), scale),
            "baseline": lambda: run_baseline(root, scale),
            "bare": lambda: run_bare(root, scale),
            "sweep": lambda: run_sweep(root, scale, work / "sweeps"),
            "profile": lambda: run_profile(root, scale),
        }
        result = {
            "date": date.today().isoformat(),
            "commit": git_commit(),
            "machine": machine(),
            "scale": scale.__dict__,
            "data": str(args.data),
            "parts": parts,
        }
        gpu = re.sub(r"[^a-z0-9]+", "-", (result["machine"]["gpu"] or "cpu").lower()).strip("-")
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{result['date']}-{gpu}{'-tiny' if args.tiny else ''}.json"
        for name in parts_wanted:
            print(f"== {name}", flush=True)
            parts[name] = run_part(runners[name])
            # Written after every part: a run cut short by its time limit keeps what it measured.
            result["targets"] = judge(parts, applicable=torch.cuda.is_available() and not args.tiny)
            path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    result["table"] = table(result)
    print(result["table"])
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
