"""What a run leaves and returns: metrics.csv, summary.json, curves.png, and its result."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from resnet_lab.config.schema import Objective
from resnet_lab.files import atomic_write
from resnet_lab.plotting import pyplot
from resnet_lab.train.environment import git_commit
from resnet_lab.train.loop import EpochMetrics, Trainer
from resnet_lab.train.torchrun import world


@dataclass(frozen=True)
class RunResult:
    """What a finished run hands its caller: the objective, and the costs a Pareto sweep weighs
    against it, the same figures summary.json records."""

    objective: float
    epochs: int
    steady_train_time_s: float
    train_examples: int

    @classmethod
    def of(cls, history: list[EpochMetrics], train_images: int) -> "RunResult":
        final = history[-1]
        return cls(final.objective, final.epoch, steady_train_time(history), train_images * final.epoch)

    def for_sweep(self, objectives: Sequence[Objective]) -> float | tuple[float, ...]:
        """What a job returns to its sweeper: the objective, or with two objectives the pair."""
        if len(objectives) < 2:
            return self.objective
        recorded = {
            Objective.accuracy: self.objective,
            Objective.train_time: self.steady_train_time_s,
            Objective.epochs: float(self.epochs),
            Objective.examples: float(self.train_examples),
        }
        return tuple(recorded[Objective(o)] for o in objectives)


def steady_train_time(history: list[EpochMetrics]) -> float:
    """The run's training seconds as its steady state predicts them: epochs x the median epoch
    after the first. The first epoch carries compilation, the first decode and cache fills, and
    any one epoch can meet a noisy neighbour; a sum of raw epoch times made the same
    configuration cost 2.5 s in one trial and 29 s in another, which no Pareto front survives."""
    return statistics.median(m.epoch_time_s for m in (history[1:] or history)) * len(history)


def evaluated(history: list[EpochMetrics]) -> list[EpochMetrics]:
    """Epochs that were evaluated (trainer.eval_every may skip some)."""
    return [m for m in history if not math.isnan(m.eval_acc)]


def run_summary(trainer: Trainer, history: list[EpochMetrics], eval_name: str, classes: list[str], wall: float, resumed_from: str | None) -> dict:
    """summary.json's content: the run's result, where and how it ran."""
    final = history[-1]
    best = max(evaluated(history), key=lambda m: m.eval_acc)
    result = RunResult.of(history, trainer.train_loader.num_samples)
    device = trainer.device
    return {
        "eval_split": eval_name,
        "epochs": result.epochs,
        "final": final.as_row(),
        "objective": result.objective,
        "best_eval_acc": best.eval_acc,
        "best_epoch": best.epoch,
        "best_train_acc": max(m.train_acc for m in history),
        "tta": trainer.tta.value,
        "compile_mode": trainer.compile_mode,
        "wall_time_s": wall,
        "train_time_s": sum(m.epoch_time_s for m in history),
        "steady_train_time_s": result.steady_train_time_s,
        "train_examples": result.train_examples,
        "mean_images_per_s": sum(m.images_per_s for m in history) / len(history),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": trainer.precision,
        "cpu_threads": torch.get_num_threads(),
        "strategy": "ddp" if trainer.distributed else "single",
        "world_size": world().size if trainer.distributed else 1,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "num_params": sum(p.numel() for p in trainer.model.parameters()),
        "classes": classes,
        "resumed_from": resumed_from,
    }


def write_metrics_csv(path: Path, history: list[EpochMetrics]) -> None:
    """Rewritten whole each epoch (it is tiny), so a resumed run's file never has stale rows."""
    buffer = io.StringIO()
    fields = list(EpochMetrics.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for metrics in history:
        writer.writerow(metrics.as_row())
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def plot_curves(path: Path, history: list[EpochMetrics], eval_name: str) -> None:
    plt = pyplot()

    epochs = [m.epoch for m in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [m.train_loss for m in history], marker="o", label="train")
    loss_axis.plot(epochs, [m.eval_loss for m in history], marker="o", label=eval_name)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axis.plot(epochs, [100 * m.train_acc for m in history], marker="o", label="train")
    acc_axis.plot(epochs, [100 * m.eval_acc for m in history], marker="o", label=eval_name)
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
